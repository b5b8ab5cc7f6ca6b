//! A `store=true` capture's upload to the bucket.

use std::time::Duration;

use super::{labels, InternalEvent, Label};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The object is in the bucket (and the capture was charged).
    Stored,
    /// The bucket refused or failed the upload (the capture was free).
    Failed,
    /// The upload did not finish within its time (the capture was free).
    TimedOut,
}
labels!(UploadOutcome {
    Stored => "stored",
    Failed => "failed",
    TimedOut => "timed_out",
});

/// One upload of a stored capture.
pub struct CaptureUploaded<'a> {
    pub outcome: UploadOutcome,
    pub key: &'a str,
    pub bytes: usize,
    pub elapsed: Duration,
    /// Why it failed (a message without credentials).
    pub why: &'a str,
}

impl CaptureUploaded<'_> {
    /// `shotfarm_storage_uploads_total{outcome}` for every outcome, at zero.
    pub fn register(metrics: &Metrics) {
        for outcome in UploadOutcome::ALL {
            metrics
                .storage_uploads_total
                .with_label_values(&[outcome.label()]);
        }
    }
}

impl InternalEvent for CaptureUploaded<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .storage_uploads_total
            .with_label_values(&[self.outcome.label()])
            .inc();
        let (key, bytes, ms) = (self.key, self.bytes, self.elapsed.as_millis() as u64);
        match self.outcome {
            UploadOutcome::Stored => tracing::info!(key, bytes, ms, "capture stored"),
            outcome => tracing::warn!(
                key,
                bytes,
                ms,
                outcome = outcome.label(),
                "capture upload failed ({}); not charged",
                self.why
            ),
        }
    }
}
