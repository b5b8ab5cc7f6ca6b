//! A low-balance notification's fate.

use std::time::Duration;

use super::{labels, InternalEvent, Label};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// The account's URL answered 2xx.
    Delivered,
    /// An attempt failed and another follows after a wait.
    Retried,
    /// Every attempt failed, or it could not be made at all.
    GaveUp,
    /// The URL answered with a permanent refusal (4xx other than 408/429), or the egress policy
    /// refused it.
    Refused,
    /// Not sent: the account has no notification URL any more.
    Dropped,
}
labels!(NotificationOutcome {
    Delivered => "delivered",
    Retried => "retried",
    GaveUp => "gave_up",
    Refused => "refused",
    Dropped => "dropped",
});

/// What happened to one low-balance notification (or to one attempt of it, for `Retried`).
pub struct LowBalanceNotification<'a> {
    pub outcome: NotificationOutcome,
    pub account: &'a str,
    /// Its `webhook-id` (empty when it was dropped before having one).
    pub webhook_id: &'a str,
    pub attempt: u32,
    /// Why it failed, was refused or was dropped.
    pub why: &'a str,
    /// For `Retried`: the wait before the next attempt.
    pub wait: Option<Duration>,
}

impl LowBalanceNotification<'_> {
    /// `shotfarm_notifications_total{outcome}` for every outcome, at zero.
    pub fn register(metrics: &Metrics) {
        for outcome in NotificationOutcome::ALL {
            metrics
                .notifications_total
                .with_label_values(&[outcome.label()]);
        }
    }
}

impl InternalEvent for LowBalanceNotification<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .notifications_total
            .with_label_values(&[self.outcome.label()])
            .inc();
        let (account, webhook_id, attempt, why) =
            (self.account, self.webhook_id, self.attempt, self.why);
        match self.outcome {
            NotificationOutcome::Delivered => {
                tracing::info!(
                    account,
                    webhook_id,
                    attempt,
                    "low-balance notification delivered"
                )
            }
            NotificationOutcome::Retried => tracing::info!(
                account,
                webhook_id,
                attempt,
                wait = ?self.wait,
                "low-balance notification failed ({why}); retrying"
            ),
            NotificationOutcome::Refused => {
                tracing::warn!(
                    account,
                    webhook_id,
                    "low-balance notification refused: {why}"
                )
            }
            NotificationOutcome::GaveUp => {
                tracing::warn!(
                    account,
                    webhook_id,
                    "low-balance notification given up: {why}"
                )
            }
            NotificationOutcome::Dropped => {
                tracing::warn!(account, "low-balance notification dropped: {why}")
            }
        }
    }
}
