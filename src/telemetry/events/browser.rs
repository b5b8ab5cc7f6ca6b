//! A browser going down and being relaunched, by reason.

use std::time::Duration;

use super::{InternalEvent, Label};
use crate::telemetry::Metrics;

/// Browser `browser` went down for `reason` (a failure, or a `planned` recycle); `failures`
/// counts its failures in a row, `unhealthy_after` is where the fleet calls it unhealthy, and
/// `relaunch_in` is the back-off before its relaunch (none while the daemon stops).
pub struct BrowserRestarted<R: Label> {
    pub browser: usize,
    pub reason: R,
    pub planned: bool,
    pub failures: u32,
    pub unhealthy_after: u32,
    pub relaunch_in: Option<Duration>,
}

impl<R: Label> BrowserRestarted<R> {
    /// `shotfarm_browser_restarts_total{reason}` for every reason, at zero.
    pub fn register(metrics: &Metrics) {
        for reason in R::ALL {
            metrics
                .browser_restarts_total
                .with_label_values(&[reason.label()]);
        }
    }
}

impl<R: Label> InternalEvent for BrowserRestarted<R> {
    fn emit(self, metrics: &Metrics) {
        let reason = self.reason.label();
        metrics
            .browser_restarts_total
            .with_label_values(&[reason])
            .inc();
        let relaunch_ms = self.relaunch_in.map(|d| d.as_millis() as u64);
        if self.planned {
            tracing::info!(
                browser = self.browser,
                reason,
                ?relaunch_ms,
                "browser down; relaunching"
            );
        } else {
            tracing::warn!(
                browser = self.browser,
                reason,
                failures = self.failures,
                ?relaunch_ms,
                "browser down after a failure; relaunching"
            );
        }
        if self.failures == self.unhealthy_after {
            tracing::error!(
                browser = self.browser,
                failures = self.failures,
                "browser is unhealthy: it keeps failing"
            );
        }
    }
}
