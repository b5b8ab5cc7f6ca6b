//! The screenshot: which region (viewport, element, full page), cut to the limits, one call to
//! Chromium or tiles.

use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, GetLayoutMetricsParams,
};
use std::time::Duration;

use chromiumoxide::Page;

use super::finish::finish;
use super::page_js::{evaluate, js_string, wait_for_element};
use super::region::{decode_base64, viewport, Region};
use super::tiles::tiled;
use super::{CaptureSettings, Rendered, Result, SELECTOR_REPORT_RESERVE};
use crate::config::PngEncoder;
use crate::farm::job::{CaptureError, CaptureSpec, ImageFormat};

/// Largest canvas stitched in memory, in device pixels (256 MB of RGBA; a 1280-px-wide page at
/// scale 1 up to 50,000 px tall). Taller captures are cut and flagged as truncated.
const MAX_STITCH_PIXELS: u64 = 64_000_000;

/// Paints what the capture asks for: the viewport, an element, or the full page.
pub(super) async fn shoot(
    page: &Page,
    spec: &CaptureSpec,
    settings: CaptureSettings,
    deadline: tokio::time::Instant,
) -> Result<Rendered> {
    let dsf = spec.device_scale_factor;
    let region = if let Some(selector) = &spec.selector {
        let budget = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(SELECTOR_REPORT_RESERVE)
            .min(settings.element_wait);
        Some(element_region(page, selector, budget).await?)
    } else if let Some(clip) = spec.clip {
        // Page coordinates, whatever the viewport shows: cut and tiled like any region.
        Some(Region {
            x: clip.x,
            y: clip.y,
            width: clip.width,
            height: clip.height,
        })
    } else if spec.full_page {
        let metrics = page
            .execute(GetLayoutMetricsParams::default())
            .await?
            .result;
        Some(Region {
            x: 0.0,
            y: 0.0,
            width: f64::from(spec.width),
            height: metrics.css_content_size.height.max(1.0),
        })
    } else {
        None
    };

    let Some(mut region) = region else {
        // Viewport capture: one call, no clip.
        let image = screenshot(page, spec, settings, None).await?;
        return finish(image, spec, settings, false).await;
    };

    // Cut at the configured height, the format's limit and the stitching budget.
    let mut truncated = false;
    let format_max = f64::from(spec.format.max_dimension()) / dsf;
    let stitch_max = MAX_STITCH_PIXELS as f64 / (region.width * dsf * dsf).max(1.0);
    let limit = f64::from(spec.max_full_page_height)
        .min(format_max)
        .min(stitch_max)
        .floor();
    if region.height > limit {
        region.height = limit;
        truncated = true;
    }

    let tile_css = (f64::from(settings.max_tile_height) / dsf).floor();
    if region.height <= tile_css {
        let image = screenshot(page, spec, settings, Some(region)).await?;
        return finish(image, spec, settings, truncated).await;
    }
    tiled(page, spec, region, tile_css, truncated).await
}

async fn element_region(page: &Page, selector: &str, budget: Duration) -> Result<Region> {
    if !wait_for_element(page, selector, budget).await? {
        return Err(CaptureError::SelectorNotFound(selector.to_string()).into());
    }
    let script = format!(
        "(() => {{ const el = document.querySelector({}); if (!el) return null; \
         const r = el.getBoundingClientRect(); \
         return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; }})()",
        js_string(selector)
    );
    let value = evaluate(page, script, false).await?;
    let rect: Option<[f64; 4]> = serde_json::from_value(value).ok();
    match rect {
        Some([x, y, width, height]) if width >= 1.0 && height >= 1.0 => Ok(Region {
            x: x.max(0.0),
            y: y.max(0.0),
            width,
            height,
        }),
        _ => Err(CaptureError::SelectorNotFound(format!(
            "{selector} (element has no visible size)"
        ))
        .into()),
    }
}

async fn screenshot(
    page: &Page,
    spec: &CaptureSpec,
    settings: CaptureSettings,
    region: Option<Region>,
) -> Result<Vec<u8>> {
    let fast_png = spec.format == ImageFormat::Png && settings.png_encoder == PngEncoder::Rust;
    let params = CaptureScreenshotParams {
        format: Some(match spec.format {
            ImageFormat::Png => CaptureScreenshotFormat::Png,
            ImageFormat::Jpeg => CaptureScreenshotFormat::Jpeg,
            ImageFormat::Webp => CaptureScreenshotFormat::Webp,
            ImageFormat::Pdf => {
                return Err(CaptureError::Internal("a PDF is printed, not shot".into()).into())
            }
        }),
        quality: match spec.format {
            ImageFormat::Png => None,
            _ => Some(i64::from(spec.quality.unwrap_or(80))),
        },
        clip: region.map(viewport),
        from_surface: Some(true),
        capture_beyond_viewport: Some(region.is_some()),
        optimize_for_speed: Some(fast_png),
    };
    let data = page.execute(params).await?.result.data;
    decode_base64(data.as_ref())
}
