//! What happens to async capture jobs: outcomes of runs and of their webhooks.

use super::{labels, InternalEvent, Label};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// The job has its image (charged once).
    Succeeded,
    /// The job failed (free), with a capture's error code.
    Failed,
    /// A worker took over a job whose claim went stale: its host died, or an earlier run left
    /// it for later (the ledger unreachable, the account at its in-flight cap, an earlier hold
    /// still open).
    Reclaimed,
    /// The job's webhook was answered 2xx.
    Delivered,
    /// The job's webhook failed every attempt, or its URL was refused.
    GaveUp,
}
labels!(JobOutcome {
    Succeeded => "succeeded",
    Failed => "failed",
    Reclaimed => "reclaimed",
    Delivered => "delivered",
    GaveUp => "gave_up",
});

/// One thing that happened to one job.
pub struct JobEvent<'a> {
    pub outcome: JobOutcome,
    pub job: &'a str,
    /// Why it failed, was taken over or given up.
    pub why: &'a str,
}

impl JobEvent<'_> {
    /// `shotfarm_jobs_total{outcome}` for every outcome, at zero.
    pub fn register(metrics: &Metrics) {
        for outcome in JobOutcome::ALL {
            metrics.jobs_total.with_label_values(&[outcome.label()]);
        }
    }
}

impl InternalEvent for JobEvent<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .jobs_total
            .with_label_values(&[self.outcome.label()])
            .inc();
        let (job, why) = (self.job, self.why);
        match self.outcome {
            JobOutcome::Succeeded => tracing::info!(job, "async job succeeded"),
            JobOutcome::Failed => tracing::info!(job, "async job failed: {why}"),
            JobOutcome::Reclaimed => tracing::warn!(job, "async job taken over: {why}"),
            JobOutcome::Delivered => tracing::info!(job, "async job webhook delivered"),
            JobOutcome::GaveUp => tracing::warn!(job, "async job webhook given up: {why}"),
        }
    }
}
