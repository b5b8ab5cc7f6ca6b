//! The daemon's Prometheus registry. One [`Metrics`] per daemon (not a global), so several daemons
//! in one test process keep separate counts.

use super::events;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for capture latencies, in seconds: 5 ms … 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    build_info: IntGaugeVec,
    /// Jobs waiting for a free tab.
    pub queue_depth: IntGauge,
    /// Captures currently running in a browser.
    pub captures_in_flight: IntGauge,
    /// Finished captures by outcome (`success` or an error code).
    pub captures_total: IntCounterVec,
    /// Time from enqueue to dispatch.
    pub queue_wait_seconds: Histogram,
    /// Time from dispatch to image ready.
    pub render_seconds: HistogramVec,
    /// Browsers by lifecycle state.
    pub browsers: IntGaugeVec,
    /// Browser restarts by reason.
    pub browser_restarts_total: IntCounterVec,
    /// Memory (PSS) of each browser's process tree.
    pub browser_memory_bytes: IntGaugeVec,
    /// HTTP requests by route and status.
    pub http_requests_total: IntCounterVec,
    /// HTTP request duration by route.
    pub http_request_duration_seconds: HistogramVec,
    /// API connections open now.
    pub http_connections_open: IntGauge,
    /// API connections closed or refused by the connection limits, by reason
    /// ([`events::ConnectionClosed`]).
    pub http_connections_closed_total: IntCounterVec,
    /// Ledger operations by operation and outcome (`error` when Redis failed).
    pub ledger_operations_total: IntCounterVec,
    /// Ledger operation latency (one Lua script round trip, retries included) by operation.
    pub ledger_operation_seconds: HistogramVec,
    /// Connections and requests the pages' egress proxy handled, by kind (`http`, `tunnel`)
    /// and outcome (`forwarded`, `refused`, `failed`).
    pub egress_requests_total: IntCounterVec,
    /// Payment webhooks by event (`order.paid`, `order.refunded`, `other`) and result
    /// (`credited`, `refunded`, `duplicate`, `ignored`, `rejected`, `error`, `retry`).
    pub webhooks_total: IntCounterVec,
    /// Low-balance notifications by outcome (`delivered`, `retried`, `gave_up`, `refused`,
    /// `dropped`).
    pub notifications_total: IntCounterVec,
    /// Low-balance notifications pending in Redis (the whole fleet's, sampled by each daemon's
    /// poll: due now, waiting for a retry or being attempted).
    pub notifications_pending: IntGauge,
    /// Uploads of `store=true` captures to the bucket by outcome (`stored`, `failed`,
    /// `timed_out`).
    pub storage_uploads_total: IntCounterVec,
    /// Async jobs by outcome (`succeeded`, `failed`, `reclaimed`, `delivered`, `gave_up`).
    pub jobs_total: IntCounterVec,
    /// Async jobs no worker has taken yet (the whole fleet's queue, sampled from Redis).
    pub jobs_waiting: IntGauge,
    /// Async jobs a worker took and has not finished (running or being delivered).
    pub jobs_in_progress: IntGauge,
    /// Age of the oldest async job no worker has taken yet, in seconds (0: none waits).
    pub jobs_oldest_waiting_seconds: Gauge,
    /// Jobs the queue holds at most.
    pub queue_capacity: IntGauge,
    /// Credits moved by holds: `reserved`, `committed`, `released`, `expired`.
    pub credits_total: IntCounterVec,
    /// Credits granted, by transaction type.
    pub credits_granted_total: IntCounterVec,
    /// Credits taken back (refunds, negative adjustments), by transaction type.
    pub credits_taken_back_total: IntCounterVec,
    /// Captures refused for lack of credits (the contract's 402).
    pub insufficient_credits_total: IntCounter,
    /// Capture-cache lookups by result (`hit`, `miss`, `expired`).
    pub cache_lookups_total: IntCounterVec,
    /// Capture-cache stores by result (`stored`, `too_large`, `failed`).
    pub cache_stores_total: IntCounterVec,
    /// Cache entries removed to stay under `cache.max_bytes`.
    pub cache_evictions_total: IntCounter,
    /// Bytes the cache's entries take on this host.
    pub cache_bytes: IntGauge,
    /// Entries in the cache on this host.
    pub cache_entries: IntGauge,
    /// 1 while the ledger's Redis answers (set by every ledger operation and readiness check).
    pub redis_up: IntGauge,
    /// 1 while every browser of the fleet is ready (what feeds systemd's watchdog).
    pub fleet_healthy: IntGauge,
}

/// Buckets for ledger round trips, in seconds: 0.1 ms … 2.5 s.
const LEDGER_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The closed set of browser states exported in `shotfarm_browsers{state}`.
pub const BROWSER_STATES: &[&str] = &["starting", "ready", "draining", "restarting", "unhealthy"];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let queue_depth = IntGauge::new("shotfarm_queue_depth", "Jobs waiting for a free tab")
            .expect("static metric definition");
        let captures_in_flight = IntGauge::new(
            "shotfarm_captures_in_flight",
            "Captures running in a browser",
        )
        .expect("static metric definition");
        let captures_total = IntCounterVec::new(
            Opts::new("shotfarm_captures_total", "Finished captures by outcome"),
            &["outcome"],
        )
        .expect("static metric definition");
        let queue_wait_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "shotfarm_queue_wait_seconds",
                "Time a job waited in the queue before a browser took it",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("static metric definition");
        let render_seconds = HistogramVec::new(
            HistogramOpts::new(
                "shotfarm_render_seconds",
                "Time from dispatch to a finished image (navigation, waits, capture, encoding)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["format"],
        )
        .expect("static metric definition");
        let browsers = IntGaugeVec::new(
            Opts::new("shotfarm_browsers", "Browsers by state"),
            &["state"],
        )
        .expect("static metric definition");
        let browser_restarts_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_browser_restarts_total",
                "Browser restarts by reason",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let browser_memory_bytes = IntGaugeVec::new(
            Opts::new(
                "shotfarm_browser_memory_bytes",
                "Memory (proportional set size) of a browser's process tree",
            ),
            &["browser"],
        )
        .expect("static metric definition");
        let http_requests_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )
        .expect("static metric definition");
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "shotfarm_http_request_duration_seconds",
                "HTTP request duration by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("static metric definition");
        let http_connections_open =
            IntGauge::new("shotfarm_http_connections_open", "API connections open now")
                .expect("static metric definition");
        let http_connections_closed_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_http_connections_closed_total",
                "API connections closed or refused by the connection limits, by reason",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let ledger_operations_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_ledger_operations_total",
                "Ledger operations by operation and outcome",
            ),
            &["operation", "outcome"],
        )
        .expect("static metric definition");
        let ledger_operation_seconds = HistogramVec::new(
            HistogramOpts::new(
                "shotfarm_ledger_operation_seconds",
                "Ledger operation latency by operation",
            )
            .buckets(LEDGER_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("static metric definition");
        let egress_requests_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_egress_requests_total",
                "Requests of captured pages through the egress proxy by kind and outcome",
            ),
            &["kind", "outcome"],
        )
        .expect("static metric definition");
        let webhooks_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_webhooks_total",
                "Payment webhook deliveries by event and result",
            ),
            &["event", "result"],
        )
        .expect("static metric definition");
        let notifications_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_notifications_total",
                "Low-balance notifications to account URLs by outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let notifications_pending = IntGauge::new(
            "shotfarm_notifications_pending",
            "Low-balance notifications pending in Redis (the fleet's, sampled)",
        )
        .expect("static metric definition");
        let jobs_total = IntCounterVec::new(
            Opts::new("shotfarm_jobs_total", "Async capture jobs by outcome"),
            &["outcome"],
        )
        .expect("static metric definition");
        let jobs_waiting = IntGauge::new(
            "shotfarm_jobs_waiting",
            "Async jobs no worker has taken yet (the fleet's queue, from Redis)",
        )
        .expect("static metric definition");
        let jobs_in_progress = IntGauge::new(
            "shotfarm_jobs_in_progress",
            "Async jobs taken by a worker and not finished (running or being delivered)",
        )
        .expect("static metric definition");
        let jobs_oldest_waiting_seconds = Gauge::new(
            "shotfarm_jobs_oldest_waiting_seconds",
            "Age of the oldest async job no worker has taken yet (0: none waits)",
        )
        .expect("static metric definition");
        let storage_uploads_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_storage_uploads_total",
                "Uploads of store=true captures to the bucket by outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let queue_capacity = IntGauge::new(
            "shotfarm_queue_capacity",
            "Jobs the capture queue holds at most",
        )
        .expect("static metric definition");
        let credits_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_credits_total",
                "Credits moved by capture holds: reserved, committed, released, expired",
            ),
            &["movement"],
        )
        .expect("static metric definition");
        for movement in ["reserved", "committed", "released", "expired"] {
            credits_total.with_label_values(&[movement]);
        }
        let credits_granted_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_credits_granted_total",
                "Credits granted to accounts by transaction type",
            ),
            &["type"],
        )
        .expect("static metric definition");
        for kind in ["purchase", "auto_topup", "signup_bonus", "adjustment"] {
            credits_granted_total.with_label_values(&[kind]);
        }
        let credits_taken_back_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_credits_taken_back_total",
                "Credits taken back from accounts (refunds, negative adjustments) by type",
            ),
            &["type"],
        )
        .expect("static metric definition");
        for kind in ["refund", "adjustment"] {
            credits_taken_back_total.with_label_values(&[kind]);
        }
        let insufficient_credits_total = IntCounter::new(
            "shotfarm_insufficient_credits_total",
            "Captures refused for lack of credits (HTTP 402)",
        )
        .expect("static metric definition");
        let redis_up = IntGauge::new("shotfarm_redis_up", "1 while the ledger's Redis answers")
            .expect("static metric definition");
        let fleet_healthy = IntGauge::new(
            "shotfarm_fleet_healthy",
            "1 while every browser of the fleet is ready",
        )
        .expect("static metric definition");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "shotfarm_build_info",
                "Build information and the host's name in the fleet (server.instance_name)",
            ),
            &["version", "host"],
        )
        .expect("static metric definition");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), &host_name()])
            .set(1);

        let build_info_handle = build_info.clone();
        for collector in [
            Box::new(queue_depth.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(captures_in_flight.clone()),
            Box::new(captures_total.clone()),
            Box::new(queue_wait_seconds.clone()),
            Box::new(render_seconds.clone()),
            Box::new(browsers.clone()),
            Box::new(browser_restarts_total.clone()),
            Box::new(browser_memory_bytes.clone()),
            Box::new(http_requests_total.clone()),
            Box::new(http_request_duration_seconds.clone()),
            Box::new(http_connections_open.clone()),
            Box::new(http_connections_closed_total.clone()),
            Box::new(ledger_operations_total.clone()),
            Box::new(ledger_operation_seconds.clone()),
            Box::new(egress_requests_total.clone()),
            Box::new(webhooks_total.clone()),
            Box::new(notifications_total.clone()),
            Box::new(notifications_pending.clone()),
            Box::new(storage_uploads_total.clone()),
            Box::new(jobs_total.clone()),
            Box::new(jobs_waiting.clone()),
            Box::new(jobs_in_progress.clone()),
            Box::new(jobs_oldest_waiting_seconds.clone()),
            Box::new(queue_capacity.clone()),
            Box::new(credits_total.clone()),
            Box::new(credits_granted_total.clone()),
            Box::new(credits_taken_back_total.clone()),
            Box::new(insufficient_credits_total.clone()),
            Box::new(redis_up.clone()),
            Box::new(fleet_healthy.clone()),
            Box::new(build_info.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        for state in BROWSER_STATES {
            browsers.with_label_values(&[state]).set(0);
        }
        let cache_lookups_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_cache_lookups_total",
                "Capture-cache lookups by result",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let cache_stores_total = IntCounterVec::new(
            Opts::new(
                "shotfarm_cache_stores_total",
                "Capture-cache stores by result",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let cache_evictions_total = IntCounter::new(
            "shotfarm_cache_evictions_total",
            "Cache entries removed to stay under cache.max_bytes",
        )
        .expect("static metric definition");
        let cache_bytes = IntGauge::new(
            "shotfarm_cache_bytes",
            "Bytes the capture cache's entries take on this host",
        )
        .expect("static metric definition");
        let cache_entries = IntGauge::new(
            "shotfarm_cache_entries",
            "Entries in the capture cache on this host",
        )
        .expect("static metric definition");
        for collector in [
            Box::new(cache_lookups_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cache_stores_total.clone()),
            Box::new(cache_evictions_total.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(cache_entries.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        let metrics = Metrics {
            registry,
            build_info: build_info_handle,
            queue_depth,
            captures_in_flight,
            captures_total,
            queue_wait_seconds,
            render_seconds,
            browsers,
            browser_restarts_total,
            browser_memory_bytes,
            http_requests_total,
            http_request_duration_seconds,
            http_connections_open,
            http_connections_closed_total,
            ledger_operations_total,
            ledger_operation_seconds,
            egress_requests_total,
            webhooks_total,
            notifications_total,
            notifications_pending,
            storage_uploads_total,
            jobs_total,
            jobs_waiting,
            jobs_in_progress,
            jobs_oldest_waiting_seconds,
            queue_capacity,
            credits_total,
            credits_granted_total,
            credits_taken_back_total,
            insufficient_credits_total,
            cache_lookups_total,
            cache_stores_total,
            cache_evictions_total,
            cache_bytes,
            cache_entries,
            redis_up,
            fleet_healthy,
        };
        // The series labelled by this module's own enums, at zero; the owners of other label
        // sets register theirs when they start.
        events::EgressRequest::register(&metrics);
        events::WebhookHandled::register(&metrics);
        events::LowBalanceNotification::register(&metrics);
        events::CacheLookup::register(&metrics);
        events::CaptureUploaded::register(&metrics);
        events::JobEvent::register(&metrics);
        metrics
    }

    /// Names this host in `shotfarm_build_info{host}` (the fleet dashboard groups by it).
    pub fn set_host(&self, host: &str) {
        self.build_info.reset();
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), host])
            .set(1);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The machine's host name, or `unknown`.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "unknown".to_string(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
