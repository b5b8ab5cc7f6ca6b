//! The part of the page a screenshot covers, and the image data as DevTools returns it: what the
//! single shot and the tiles share.

use chromiumoxide::cdp::browser_protocol::page::Viewport;

use super::Result;
use crate::farm::job::CaptureError;

/// A region of the page in CSS pixels.
#[derive(Debug, Clone, Copy)]
pub(super) struct Region {
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) width: f64,
    pub(super) height: f64,
}

pub(super) fn viewport(region: Region) -> Viewport {
    Viewport {
        x: region.x,
        y: region.y,
        width: region.width,
        height: region.height,
        scale: 1.0,
    }
}

pub(super) fn decode_base64(data: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| CaptureError::Internal(format!("bad screenshot data: {e}")).into())
}
