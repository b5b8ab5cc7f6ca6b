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

/// Re-encodes a PNG (Chromium's `optimizeForSpeed` output, 1.3–2.2× its default size) at zlib
/// level 4. `benches/png_encoding.rs` compares this path with Chromium's own encoder.
pub fn recompress_png(input: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let decoder = png::Decoder::new(Cursor::new(input));
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
    encode_png_raw(
        &buf,
        info.width,
        info.height,
        info.color_type,
        info.bit_depth,
    )
}

fn encode_png_raw(
    pixels: &[u8],
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(pixels.len() / 4);
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(depth);
        // zlib level 4 with adaptive filters: Chromium's default size (±0.3 %) in about two thirds
        // of the time of level 6; fdeflate's fast mode is 7–40× larger on gradients.
        encoder.set_deflate_compression(png::DeflateCompression::Level(4));
        encoder.set_filter(png::Filter::Adaptive);
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
