//! Image work done in Rust on the blocking pool: recompressing Chromium's fast PNG, stitching
//! tiles of very tall captures, and encoding a stitched canvas into the requested format.

use std::io::Cursor;

use image::buffer::ConvertBuffer;
use image::{ImageFormat as ImgFormat, RgbaImage};

use super::job::ImageFormat;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("decode: {0}")]
    Decode(String),
    #[error("encode: {0}")]
    Encode(String),
}

/// Deflate level of every PNG we write (zlib-rs, flate2's backend here).
const PNG_LEVEL: u8 = 6;

/// Share of pixels equal to their left neighbour above which an image is drawn UI (text, flat
/// colour, borders) and is written without row filters, and below which it is photographic and
/// gets libpng-style adaptive filters; in between both are tried and the smaller kept. On this
/// project's fixtures (`benches/png_encoding.rs`): the landing page (flatness 0.52–0.55)
/// unfiltered is 0.58× the bytes of Chromium's default PNG in a third of the time adaptive
/// filters take (0.82×), a near-blank page (1.0) 0.97×, while a photo (0.03) unfiltered would be
/// 1.7×.
const FLAT_UI: f64 = 0.5;
const FLAT_PHOTO: f64 = 0.3;

/// Share of pixels (of `bpp` bytes each) equal to their left neighbour.
fn flatness(pixels: &[u8], width: u32, bpp: usize) -> f64 {
    match bpp {
        3 => flatness_of::<3>(pixels, width),
        4 => flatness_of::<4>(pixels, width),
        _ => 0.0,
    }
}

/// [`flatness`] with the pixel size a constant, so each comparison is a fixed-size one
/// (recompressing a tiny page's PNG: about 6 ms with a run-time size, about 4 ms with this).
fn flatness_of<const N: usize>(pixels: &[u8], width: u32) -> f64 {
    let row = width as usize * N;
    if width < 2 || pixels.len() < row {
        return 0.0;
    }
    let mut same = 0usize;
    let mut total = 0usize;
    for line in pixels.chunks_exact(row) {
        same += line
            .chunks_exact(N)
            .zip(line[N..].chunks_exact(N))
            .filter(|(a, b)| a == b)
            .count();
        total += width as usize - 1;
    }
    if total == 0 {
        0.0
    } else {
        same as f64 / total as f64
    }
}

/// Re-encodes a PNG (Chromium's `optimizeForSpeed` output, 1.3–2.2× its default size) so that it
/// is no larger than Chromium's default encoding, with identical pixels. An RGBA image whose
/// every pixel is opaque is written as RGB (it decodes back to the same RGBA pixels).
pub fn recompress_png(input: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut decoder = png::Decoder::new(Cursor::new(input));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder
        .read_info()
        .map_err(|e| EncodeError::Decode(e.to_string()))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| EncodeError::Decode("image too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| EncodeError::Decode(e.to_string()))?;
    buf.truncate(info.buffer_size());
    match (info.color_type, info.bit_depth) {
        (png::ColorType::Rgba, png::BitDepth::Eight)
            if buf.chunks_exact(4).all(|p| p[3] == 255) =>
        {
            let rgb: Vec<u8> = buf
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            encode_png_raw(
                &rgb,
                info.width,
                info.height,
                png::ColorType::Rgb,
                png::BitDepth::Eight,
            )
        }
        (color, depth) => encode_png_raw(&buf, info.width, info.height, color, depth),
    }
}

/// Encodes with the row filters that suit the pixels (see [`FLAT_UI`]).
fn encode_png_raw(
    pixels: &[u8],
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
) -> Result<Vec<u8>, EncodeError> {
    let at = |filter| encode_png_at(pixels, width, height, color, depth, PNG_LEVEL, filter);
    let bpp = match (color, depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        // Anything else Chromium never sends: the general choice.
        _ => return at(png::Filter::Adaptive),
    };
    let flat = flatness(pixels, width, bpp);
    if flat >= FLAT_UI {
        return at(png::Filter::NoFilter);
    }
    if flat <= FLAT_PHOTO {
        return at(png::Filter::Adaptive);
    }
    let plain = at(png::Filter::NoFilter)?;
    let filtered = at(png::Filter::Adaptive)?;
    Ok(if plain.len() <= filtered.len() {
        plain
    } else {
        filtered
    })
}

fn encode_png_at(
    pixels: &[u8],
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    level: u8,
    filter: png::Filter,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(pixels.len() / 4);
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(depth);
        encoder.set_deflate_compression(png::DeflateCompression::Level(level));
        encoder.set_filter(filter);
        let mut writer = encoder
            .write_header()
            .map_err(|e| EncodeError::Encode(e.to_string()))?;
        writer
            .write_image_data(pixels)
            .map_err(|e| EncodeError::Encode(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| EncodeError::Encode(e.to_string()))?;
    }
    Ok(out)
}

/// Image work (recompression, stitching, encoding) runs on tokio's blocking threads, at most
/// this many at once — one per core — so a burst of captures queues its encodes instead of
/// oversubscribing the cores Chromium renders on.
pub fn pool() -> &'static tokio::sync::Semaphore {
    static POOL: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// Decodes any image Chromium produced.
pub fn decode(input: &[u8]) -> Result<RgbaImage, EncodeError> {
    image::load_from_memory(input)
        .map(|img| img.to_rgba8())
        .map_err(|e| EncodeError::Decode(e.to_string()))
}

/// Copies `tile` into `canvas` with its top edge at row `top` (rows past the canvas are cut).
pub fn blit(canvas: &mut RgbaImage, tile: &RgbaImage, top: u32) {
    let width = canvas.width().min(tile.width()) as usize;
    let rows = tile.height().min(canvas.height().saturating_sub(top));
    let canvas_stride = canvas.width() as usize * 4;
    let tile_stride = tile.width() as usize * 4;
    let dst: &mut [u8] = canvas;
    let src: &[u8] = tile;
    for row in 0..rows as usize {
        let d = (top as usize + row) * canvas_stride;
        let s = row * tile_stride;
        dst[d..d + width * 4].copy_from_slice(&src[s..s + width * 4]);
    }
}

/// Encodes a stitched canvas. WebP from Rust is lossless (the `image` crate has no lossy WebP
/// encoder), so `quality` applies to JPEG only on this path.
pub fn encode(
    canvas: &RgbaImage,
    format: ImageFormat,
    quality: Option<u8>,
    opaque: bool,
) -> Result<Vec<u8>, EncodeError> {
    let (w, h) = canvas.dimensions();
    match format {
        ImageFormat::Png => {
            if opaque {
                let rgb: image::RgbImage = canvas.convert();
                encode_png_raw(&rgb, w, h, png::ColorType::Rgb, png::BitDepth::Eight)
            } else {
                encode_png_raw(canvas, w, h, png::ColorType::Rgba, png::BitDepth::Eight)
            }
        }
        ImageFormat::Jpeg => {
            let rgb: image::RgbImage = canvas.convert();
            let mut out = Vec::new();
            let encoder =
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.unwrap_or(80));
            rgb.write_with_encoder(encoder)
                .map_err(|e| EncodeError::Encode(e.to_string()))?;
            Ok(out)
        }
        ImageFormat::Webp => {
            let mut out = Cursor::new(Vec::new());
            canvas
                .write_to(&mut out, ImgFormat::WebP)
                .map_err(|e| EncodeError::Encode(e.to_string()))?;
            Ok(out.into_inner())
        }
        ImageFormat::Pdf => Err(EncodeError::Encode(
            "a PDF is printed by Chromium, not encoded".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(w: u32, h: u32) -> RgbaImage {
        RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 7, 255])
        })
    }

    #[test]
    fn recompressed_png_keeps_pixels() {
        let img = sample(64, 48);
        let png = encode(&img, ImageFormat::Png, None, false).expect("encode");
        let again = recompress_png(&png).expect("recompress");
        assert_eq!(decode(&again).expect("decode"), img);
    }

    #[test]
    fn opaque_rgba_is_written_as_rgb_with_the_same_pixels() {
        let img = sample(300, 200);
        let rgba = encode_png_at(
            &img,
            300,
            200,
            png::ColorType::Rgba,
            png::BitDepth::Eight,
            1,
            png::Filter::NoFilter,
        )
        .expect("encode");
        let again = recompress_png(&rgba).expect("recompress");
        assert_eq!(again[25], 2, "colour type RGB");
        assert_eq!(decode(&again).expect("decode"), img);
        assert!(again.len() < rgba.len());
    }

    #[test]
    fn translucent_pixels_keep_their_alpha() {
        let mut img = sample(40, 30);
        img.get_pixel_mut(3, 4).0[3] = 17;
        let rgba = encode_png_at(
            &img,
            40,
            30,
            png::ColorType::Rgba,
            png::BitDepth::Eight,
            1,
            png::Filter::NoFilter,
        )
        .expect("encode");
        let again = recompress_png(&rgba).expect("recompress");
        assert_eq!(again[25], 6, "colour type RGBA");
        assert_eq!(decode(&again).expect("decode"), img);
    }

    #[test]
    fn flatness_tells_drawn_ui_from_photographs() {
        let flat = RgbaImage::from_pixel(50, 20, image::Rgba([250, 250, 250, 255]));
        assert!(flatness(&flat, 50, 4) >= FLAT_UI);
        let noisy = RgbaImage::from_fn(50, 20, |x, y| {
            image::Rgba([(x * 7 + y * 13) as u8, (x * y) as u8, x as u8, 255])
        });
        assert!(flatness(&noisy, 50, 4) <= FLAT_PHOTO);
        assert_eq!(flatness(&[], 0, 4), 0.0);
        // Every path writes the same pixels.
        for img in [flat, noisy] {
            let png = encode(&img, ImageFormat::Png, None, false).expect("encode");
            assert_eq!(decode(&png).expect("decode"), img);
        }
    }

    #[test]
    fn blit_places_rows_and_clips() {
        let mut canvas = RgbaImage::new(4, 5);
        let tile = RgbaImage::from_pixel(4, 3, image::Rgba([9, 9, 9, 255]));
        blit(&mut canvas, &tile, 3);
        assert_eq!(canvas.get_pixel(0, 2).0, [0, 0, 0, 0]);
        assert_eq!(canvas.get_pixel(3, 3).0, [9, 9, 9, 255]);
        assert_eq!(canvas.get_pixel(3, 4).0, [9, 9, 9, 255]);
    }

    #[test]
    fn every_format_encodes_to_its_own_signature() {
        let img = sample(20, 10);
        let png = encode(&img, ImageFormat::Png, None, true).expect("png");
        let jpg = encode(&img, ImageFormat::Jpeg, Some(70), true).expect("jpeg");
        let webp = encode(&img, ImageFormat::Webp, None, true).expect("webp");
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(&jpg[0..2], &[0xFF, 0xD8]);
        assert_eq!(&webp[8..12], b"WEBP");
        for bytes in [&png, &jpg, &webp] {
            let size = imagesize::blob_size(bytes).expect("size");
            assert_eq!((size.width, size.height), (20, 10));
        }
    }
}
