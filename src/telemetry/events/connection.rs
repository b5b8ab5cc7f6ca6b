//! An API connection closed or refused by the connection limits.

use std::net::SocketAddr;

use super::{InternalEvent, Label};
use crate::telemetry::Metrics;

/// The API's connection guard closed (or refused) a connection for `reason`.
pub struct ConnectionClosed<R: Label> {
    pub reason: R,
    pub peer: SocketAddr,
}

impl<R: Label> ConnectionClosed<R> {
    /// `shotfarm_http_connections_closed_total{reason}` for every reason, at zero.
    pub fn register(metrics: &Metrics) {
        for reason in R::ALL {
            metrics
                .http_connections_closed_total
                .with_label_values(&[reason.label()]);
        }
    }
}

impl<R: Label> InternalEvent for ConnectionClosed<R> {
    fn emit(self, metrics: &Metrics) {
        let reason = self.reason.label();
        metrics
            .http_connections_closed_total
            .with_label_values(&[reason])
            .inc();
        tracing::debug!(peer = %self.peer, reason, "connection closed by the limits");
    }
}
