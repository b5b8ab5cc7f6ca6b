//! Captures taller than Chromium paints in one go: painted strip by strip, stitched and encoded
//! in Rust.

use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams,
};
use chromiumoxide::Page;

use super::finish::blocking;
use super::region::{decode_base64, viewport, Region};
use super::{Rendered, Result};
use crate::farm::encode;
use crate::farm::job::{CaptureSpec, ImageFormat, Phases};

/// Captures `region` strip by strip and stitches the strips in Rust.
pub(super) async fn tiled(
    page: &Page,
    spec: &CaptureSpec,
    region: Region,
    tile_css: f64,
    truncated: bool,
) -> Result<Rendered> {
    let dsf = spec.device_scale_factor;
    let width_px = (region.width * dsf).round() as u32;
    let height_px = (region.height * dsf).round() as u32;
    let mut canvas = image::RgbaImage::new(width_px, height_px);
    let mut encoding = Duration::ZERO;
    let mut offset = 0.0;
    while offset < region.height {
        let strip = Region {
            x: region.x,
            y: region.y + offset,
            width: region.width,
            height: tile_css.min(region.height - offset),
        };
        let params = CaptureScreenshotParams {
            format: Some(CaptureScreenshotFormat::Png),
            quality: None,
            clip: Some(viewport(strip)),
            from_surface: Some(true),
            capture_beyond_viewport: Some(true),
            optimize_for_speed: Some(true),
        };
        let bytes = decode_base64(page.execute(params).await?.result.data.as_ref())?;
        let top = (offset * dsf).round() as u32;
        let stitching = std::time::Instant::now();
        canvas = blocking(move || {
            let tile = encode::decode(&bytes)?;
            encode::blit(&mut canvas, &tile, top);
            Ok(canvas)
        })
        .await?;
        encoding += stitching.elapsed();
        offset += strip.height;
    }
    let format = spec.format;
    let quality = spec.quality;
    let opaque = !spec.omit_background || format == ImageFormat::Jpeg;
    let encoding_started = std::time::Instant::now();
    let image = blocking(move || encode::encode(&canvas, format, quality, opaque)).await?;
    encoding += encoding_started.elapsed();
    Ok(Rendered {
        image,
        width: width_px,
        height: height_px,
        truncated,
        phases: Phases {
            encode: encoding,
            ..Phases::default()
        },
        page: None,
    })
}
