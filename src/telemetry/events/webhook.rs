//! A payment webhook (Polar) handled or refused.

use std::fmt::{Debug, Display};

use super::{labels, InternalEvent, Label};
use crate::telemetry::Metrics;

/// The `event` label: the two event types that move credits, and everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    OrderPaid,
    OrderRefunded,
    Other,
}
labels!(WebhookEvent {
    OrderPaid => "order.paid",
    OrderRefunded => "order.refunded",
    Other => "other",
});

impl WebhookEvent {
    /// The label of a webhook's `type`.
    pub fn of(event_type: &str) -> WebhookEvent {
        match event_type {
            "order.paid" => WebhookEvent::OrderPaid,
            "order.refunded" => WebhookEvent::OrderRefunded,
            _ => WebhookEvent::Other,
        }
    }
}

/// The `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    /// A paid order's credits were granted.
    Credited,
    /// A refunded order's unspent credits were taken back.
    Refunded,
    /// Already applied: nothing changed.
    Duplicate,
    /// Not an event that moves credits, or not for us.
    Ignored,
    /// Bad signature, bad body, or an unknown product: refused for good.
    Rejected,
    /// The ledger failed: Polar retries.
    Error,
    /// A refund before its payment was credited: Polar retries.
    Retry,
}
labels!(WebhookResult {
    Credited => "credited",
    Refunded => "refunded",
    Duplicate => "duplicate",
    Ignored => "ignored",
    Rejected => "rejected",
    Error => "error",
    Retry => "retry",
});

fn count(metrics: &Metrics, event: WebhookEvent, result: WebhookResult) {
    metrics
        .webhooks_total
        .with_label_values(&[event.label(), result.label()])
        .inc();
}

/// A webhook was verified and applied (or recognised as a duplicate, or ignored).
pub struct WebhookHandled<'a> {
    pub event: WebhookEvent,
    pub result: WebhookResult,
    pub webhook_id: &'a str,
    pub detail: &'a dyn Debug,
}

impl WebhookHandled<'_> {
    /// `shotfarm_webhooks_total{event,result}` for every pair, at zero (the family both
    /// webhook events count in).
    pub fn register(metrics: &Metrics) {
        for event in WebhookEvent::ALL {
            for result in WebhookResult::ALL {
                metrics
                    .webhooks_total
                    .with_label_values(&[event.label(), result.label()]);
            }
        }
    }
}

impl InternalEvent for WebhookHandled<'_> {
    fn emit(self, metrics: &Metrics) {
        count(metrics, self.event, self.result);
        tracing::info!(
            target: "payments",
            webhook_id = self.webhook_id,
            event = self.event.label(),
            handled = ?self.detail,
            "webhook handled"
        );
    }
}

/// A webhook was refused (its answer tells Polar whether to retry).
pub struct WebhookRefused<'a> {
    pub event: WebhookEvent,
    pub result: WebhookResult,
    pub webhook_id: &'a str,
    pub error: &'a dyn Display,
}

impl InternalEvent for WebhookRefused<'_> {
    fn emit(self, metrics: &Metrics) {
        count(metrics, self.event, self.result);
        tracing::warn!(
            target: "payments",
            webhook_id = self.webhook_id,
            "webhook refused: {}",
            self.error
        );
    }
}
