//! A capture request answered: an image, or an error code.

use std::fmt::Display;
use std::time::Duration;

use super::InternalEvent;
use crate::telemetry::Metrics;

/// `shotfarm_captures_total{outcome}`: `success` and every error code, at zero (the family
/// both capture events count in).
pub fn register_captures(metrics: &Metrics, codes: &[&'static str]) {
    let captures = &metrics.captures_total;
    captures.with_label_values(&["success"]);
    for code in codes {
        captures.with_label_values(&[code]);
    }
}

/// An image was delivered.
pub struct CaptureSucceeded {
    pub format: &'static str,
    pub bytes: usize,
    pub queue: Duration,
    pub render: Duration,
    pub navigate: Duration,
    pub capture: Duration,
    pub encode: Duration,
}

impl InternalEvent for CaptureSucceeded {
    fn emit(self, metrics: &Metrics) {
        metrics.captures_total.with_label_values(&["success"]).inc();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::info!(
            format = self.format,
            bytes = self.bytes,
            queue_ms = ms(self.queue),
            render_ms = ms(self.render),
            navigate_ms = ms(self.navigate),
            capture_ms = ms(self.capture),
            encode_ms = ms(self.encode),
            "captured"
        );
    }
}

/// A capture failed with error `code` (one of the capture error codes); `internal` failures
/// are ours, not the page's, and are logged as errors.
pub struct CaptureFailed<'a> {
    pub code: &'static str,
    pub internal: bool,
    pub error: &'a dyn Display,
}

impl InternalEvent for CaptureFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.captures_total.with_label_values(&[self.code]).inc();
        if self.internal {
            tracing::error!(
                code = self.code,
                "capture failed internally: {}",
                self.error
            );
        } else {
            tracing::info!(code = self.code, "capture failed: {}", self.error);
        }
    }
}
