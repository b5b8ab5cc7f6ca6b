//! One ledger operation (a Lua script round trip, retries included) and its outcome.

use std::fmt::Display;
use std::time::Duration;

use super::InternalEvent;
use crate::telemetry::Metrics;

/// Redis answered `operation` with `outcome` (both names from the ledger's `Op` and `Outcome`).
pub struct LedgerOperationDone {
    pub operation: &'static str,
    pub outcome: &'static str,
    pub elapsed: Duration,
}

impl LedgerOperationDone {
    /// `shotfarm_ledger_operations_total{operation,outcome}` and
    /// `shotfarm_ledger_operation_seconds{operation}` for these pairs, at zero.
    pub fn register(metrics: &Metrics, pairs: &[(&'static str, &'static str)]) {
        for (operation, outcome) in pairs {
            metrics
                .ledger_operations_total
                .with_label_values(&[operation, outcome]);
            metrics
                .ledger_operation_seconds
                .with_label_values(&[operation]);
        }
    }
}

impl InternalEvent for LedgerOperationDone {
    fn emit(self, metrics: &Metrics) {
        count(metrics, self.operation, self.outcome, self.elapsed);
        metrics.redis_up.set(1);
    }
}

/// Redis did not answer `operation` (after the retries an idempotent operation gets).
pub struct LedgerOperationFailed<'a> {
    pub operation: &'static str,
    pub elapsed: Duration,
    pub error: &'a dyn Display,
}

impl InternalEvent for LedgerOperationFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        count(metrics, self.operation, "error", self.elapsed);
        metrics.redis_up.set(0);
        tracing::warn!(
            operation = self.operation,
            "ledger operation failed: {}",
            self.error
        );
    }
}

fn count(metrics: &Metrics, operation: &str, outcome: &str, elapsed: Duration) {
    metrics
        .ledger_operations_total
        .with_label_values(&[operation, outcome])
        .inc();
    metrics
        .ledger_operation_seconds
        .with_label_values(&[operation])
        .observe(elapsed.as_secs_f64());
}
