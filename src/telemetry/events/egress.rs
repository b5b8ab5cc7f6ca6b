//! A request or tunnel through the pages' egress proxy.

use std::fmt::Display;

use super::{labels, InternalEvent, Label};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressKind {
    /// A plain-HTTP request, forwarded.
    Http,
    /// A `CONNECT` tunnel (HTTPS, WebSockets over TLS).
    Tunnel,
}
labels!(EgressKind { Http => "http", Tunnel => "tunnel" });

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressOutcome {
    Forwarded,
    /// The policy refused the destination.
    Refused,
    /// The destination could not be reached, or the exchange broke.
    Failed,
}
labels!(EgressOutcome { Forwarded => "forwarded", Refused => "refused", Failed => "failed" });

/// One proxied request or tunnel and what became of it.
pub struct EgressRequest<'a> {
    pub kind: EgressKind,
    pub outcome: EgressOutcome,
    pub error: Option<&'a dyn Display>,
}

impl EgressRequest<'_> {
    /// `shotfarm_egress_requests_total{kind,outcome}` for every pair, at zero.
    pub fn register(metrics: &Metrics) {
        for kind in EgressKind::ALL {
            for outcome in EgressOutcome::ALL {
                metrics
                    .egress_requests_total
                    .with_label_values(&[kind.label(), outcome.label()]);
            }
        }
    }
}

impl InternalEvent for EgressRequest<'_> {
    fn emit(self, metrics: &Metrics) {
        let (kind, outcome) = (self.kind.label(), self.outcome.label());
        metrics
            .egress_requests_total
            .with_label_values(&[kind, outcome])
            .inc();
        if let Some(e) = self.error {
            tracing::debug!(target: "egress", kind, outcome, "{e}");
        }
    }
}
