//! `[capture]`: defaults and caps of capture options, and who encodes PNGs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PngEncoder {
    /// Chromium's own PNG encoder, inside the browser.
    Chromium,
    /// Chromium's fast encoding, recompressed in Rust on the bounded encoding pool.
    Rust,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureConfig {
    /// Capture timeout when the request gives none, in milliseconds.
    pub default_timeout_ms: u64,
    /// Largest `timeout` a request may ask for, in milliseconds.
    pub max_timeout_ms: u64,
    /// Largest `delay` a request may ask for, in milliseconds.
    pub max_delay_ms: u64,
    /// Viewport width when the request gives none, in CSS pixels.
    pub default_width: u32,
    /// Viewport height when the request gives none, in CSS pixels.
    pub default_height: u32,
    /// Largest viewport width, in CSS pixels.
    pub max_width: u32,
    /// Largest viewport height, in CSS pixels.
    pub max_height: u32,
    /// Full-page captures are cut at this height, in CSS pixels.
    pub max_full_page_height: u32,
    /// Tallest strip Chromium paints in one go, in device pixels; taller captures are tiled.
    pub max_tile_height: u32,
    /// How long `selector` waits for its element to appear, in milliseconds.
    pub element_wait_ms: u64,
    /// Who compresses PNGs: `rust` (default: Chromium's fast encoding, recompressed in Rust on a
    /// bounded pool, no larger than Chromium's own output at a fraction of its CPU) or
    /// `chromium` (Chromium's default encoder, on the browser's critical path).
    pub png_encoder: PngEncoder,
    /// Largest `css` or `js` option, in bytes.
    pub max_script_bytes: usize,
    /// Largest image a capture may return, in bytes; a larger one fails with
    /// `output_too_large` (and costs nothing).
    pub max_output_bytes: usize,
    /// Most pages a `format=pdf` capture prints; a longer document is cut after that many
    /// (counted over the pages `pdf_page_ranges` selects).
    pub max_pdf_pages: u32,
    /// Largest `html` option (markup rendered instead of a URL), in bytes.
    pub max_html_bytes: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            default_timeout_ms: 30_000,
            max_timeout_ms: 60_000,
            max_delay_ms: 10_000,
            default_width: 1280,
            default_height: 800,
            max_width: 3840,
            max_height: 4320,
            max_full_page_height: 32_768,
            max_tile_height: 8_192,
            element_wait_ms: 5_000,
            png_encoder: PngEncoder::Rust,
            max_script_bytes: 64 * 1024,
            max_output_bytes: 64 * 1024 * 1024,
            max_pdf_pages: 50,
            max_html_bytes: 512 * 1024,
        }
    }
}
