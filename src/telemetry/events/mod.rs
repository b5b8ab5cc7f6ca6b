//! Instrumentation events, in the style of vector's `internal_events`: each event is one struct
//! whose [`InternalEvent::emit`] writes its log line and updates its metrics together, so the
//! two cannot drift apart. Label values come from closed enums ([`Label`]); each family's
//! series are created at zero by a `register` function before the first event, so a fresh
//! daemon's first scrape already has every series the dashboards and alert rules query.
//!
//! The owners of the enums that label a series (a restart reason, a connection's close reason)
//! implement [`Label`] themselves; this module stays below them and names none of their types.

mod browser;
mod cache;
mod capture;
mod connection;
mod egress;
mod jobs;
mod ledger;
mod notification;
mod storage;
mod webhook;

pub use browser::BrowserRestarted;
pub use cache::{CacheEvicted, CacheLookup, CacheStore, LookupResult, StoreResult};
pub use capture::{register_captures, CaptureFailed, CaptureSucceeded};
pub use connection::ConnectionClosed;
pub use egress::{EgressKind, EgressOutcome, EgressRequest};
pub use jobs::{JobEvent, JobOutcome};
pub use ledger::{LedgerOperationDone, LedgerOperationFailed};
pub use notification::{LowBalanceNotification, NotificationOutcome};
pub use storage::{CaptureUploaded, UploadOutcome};
pub use webhook::{WebhookEvent, WebhookHandled, WebhookRefused, WebhookResult};

use super::Metrics;

/// A closed set of label values.
pub trait Label: Copy + 'static {
    /// Every value, so each series can exist at zero before its first event.
    const ALL: &'static [Self];

    /// The value as it appears in the metric's label (and in the log line).
    fn label(self) -> &'static str;
}

/// Something that happened, reported once: its log line and its metrics.
pub trait InternalEvent {
    fn emit(self, metrics: &Metrics);
}

/// Implements [`Label`] for a fieldless enum from `Variant => "label"` pairs.
macro_rules! labels {
    ($ty:ty { $($variant:ident => $label:literal),+ $(,)? }) => {
        impl $crate::telemetry::events::Label for $ty {
            const ALL: &'static [Self] = &[$(<$ty>::$variant),+];
            fn label(self) -> &'static str {
                match self {
                    $(<$ty>::$variant => $label),+
                }
            }
        }
    };
}
pub(crate) use labels;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_have_distinct_values() {
        fn distinct<L: Label>() {
            let mut seen: Vec<&str> = L::ALL.iter().map(|l| l.label()).collect();
            seen.sort_unstable();
            let before = seen.len();
            seen.dedup();
            assert_eq!(
                seen.len(),
                before,
                "{:?}",
                L::ALL.iter().map(|l| l.label()).collect::<Vec<_>>()
            );
        }
        distinct::<EgressKind>();
        distinct::<EgressOutcome>();
        distinct::<NotificationOutcome>();
        distinct::<JobOutcome>();
        distinct::<UploadOutcome>();
        distinct::<WebhookEvent>();
        distinct::<WebhookResult>();
    }

    #[test]
    fn an_event_moves_its_series_and_registration_creates_them_at_zero() {
        let metrics = Metrics::new();
        EgressRequest::register(&metrics);
        let text = metrics.render();
        for kind in EgressKind::ALL {
            for outcome in EgressOutcome::ALL {
                let series = format!(
                    "shotfarm_egress_requests_total{{kind=\"{}\",outcome=\"{}\"}} 0",
                    kind.label(),
                    outcome.label()
                );
                assert!(text.contains(&series), "{series} missing:\n{text}");
            }
        }
        EgressRequest {
            kind: EgressKind::Tunnel,
            outcome: EgressOutcome::Refused,
            error: None,
        }
        .emit(&metrics);
        let text = metrics.render();
        assert!(
            text.contains("shotfarm_egress_requests_total{kind=\"tunnel\",outcome=\"refused\"} 1"),
            "{text}"
        );
    }
}
