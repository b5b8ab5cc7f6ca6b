//! Image work after Chromium painted, on the bounded encoding pool: PNG recompression (when
//! configured) and measuring.

use std::time::Duration;

use super::{CaptureSettings, Rendered, Result};
use crate::config::PngEncoder;
use crate::farm::encode;
use crate::farm::job::{CaptureError, CaptureSpec, ImageFormat, Phases};

/// Final touches on the blocking pool: PNG recompression (when configured) and measuring.
pub(super) async fn finish(
    image: Vec<u8>,
    spec: &CaptureSpec,
    settings: CaptureSettings,
    truncated: bool,
) -> Result<Rendered> {
    let recompress = spec.format == ImageFormat::Png && settings.png_encoder == PngEncoder::Rust;
    let encoding = std::time::Instant::now();
    let image = if recompress {
        blocking(move || encode::recompress_png(&image)).await?
    } else {
        image
    };
    let encoding = if recompress {
        encoding.elapsed()
    } else {
        Duration::ZERO
    };
    let size = imagesize::blob_size(&image)
        .map_err(|e| CaptureError::Internal(format!("unreadable image from Chromium: {e}")))?;
    Ok(Rendered {
        width: size.width as u32,
        height: size.height as u32,
        image,
        truncated,
        phases: Phases {
            encode: encoding,
            ..Phases::default()
        },
        page: None,
    })
}

/// Runs image work on the bounded encoding pool, off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::result::Result<T, encode::EncodeError> + Send + 'static,
) -> Result<T> {
    let _permit = encode::pool()
        .acquire()
        .await
        .map_err(|e| CaptureError::Internal(format!("image pool: {e}")))?;
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(CaptureError::Internal(e.to_string()).into()),
        Err(e) => Err(CaptureError::Internal(format!("image task: {e}")).into()),
    }
}
