//! Observability: log setup ([`logging`]), the Prometheus registry ([`metrics`]) and the
//! instrumentation events that write a log line and its metrics together ([`events`]).
//! Metric names follow `shotfarm_<name>_<unit>[_total]`; label values come from closed sets.

pub(crate) mod events;
pub mod logging;
pub mod metrics;

pub use metrics::Metrics;
