//! Observability: log setup ([`logging`]) and the Prometheus registry ([`metrics`]).
//! Metric names follow `shotfarm_<name>_<unit>[_total]`; label values come from closed sets.

pub mod logging;
pub mod metrics;

pub use metrics::Metrics;
