//! Wiring and shutdown order. [`run`] owns the whole daemon: a multi-thread tokio runtime with
//! the actix system on it, the farm, the API and metrics listeners. Shutdown is a future passed
//! in (the binary gives it SIGTERM/SIGINT, tests give it a channel):
//! stop accepting HTTP → drain captures up to the grace period → close every browser → exit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accounts::Accounts;
use crate::api::{self, ApiState};
use crate::config::Config;
use crate::content_filters::ContentFilters;
use crate::egress::netns::Namespace;
use crate::egress::{EgressPolicy, EgressProxy};
use crate::farm::{Farm, Placement};
use crate::jobs::worker::Workers;
use crate::jobs::JobStore;
use crate::ledger::{sweeper, Ledger, LedgerError, RedisHandle};
use crate::notifications::store::NoticeStore;
use crate::notifications::{LowBalance, Notifier};
use crate::payments::Payments;
use crate::service_manager;
use crate::storage::Storage;
use crate::telemetry::Metrics;

/// Where the daemon listens, once bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub api: SocketAddr,
    pub metrics: SocketAddr,
}

/// Runs the daemon until `shutdown` resolves and the drain is over. Blocks the calling thread,
/// which must live as long as the daemon (it hosts the actors).
pub fn run<S, R>(config: Config, shutdown: S, on_ready: R) -> anyhow::Result<()>
where
    S: Future<Output = ()> + 'static,
    R: FnOnce(Bound) + 'static,
{
    let result = daemon_system().block_on(serve(config, shutdown, on_ready));
    actix_rt::System::current().stop();
    result
}

/// The daemon's runtime: an actix system (hosting the actors on this thread) on a multi-thread
/// tokio runtime with one worker per core (at least 2). Benches measure in the same one.
pub fn daemon_system() -> actix_rt::SystemRunner {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    actix_rt::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("shotfarm-worker")
            .enable_all()
            .build()
            .expect("the tokio runtime must start")
    })
}

async fn serve<S, R>(config: Config, shutdown: S, on_ready: R) -> anyhow::Result<()>
where
    S: Future<Output = ()> + 'static,
    R: FnOnce(Bound),
{
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    if !config.server.instance_name.is_empty() {
        metrics.set_host(&config.server.instance_name);
    }
    let api_listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let metrics_listener = TcpListener::bind(config.server.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.metrics_listen))?;
    let bound = Bound {
        api: api_listener.local_addr()?,
        metrics: metrics_listener.local_addr()?,
    };

    let redis = RedisHandle::new(&config.redis)?.with_replica_acks(
        config.ledger.replica_acks,
        Duration::from_millis(config.ledger.replica_ack_timeout_ms),
    );
    // Connect before announcing readiness when Redis is there; keep trying in the background
    // when it is not (captures get 503 `ledger_unavailable` meanwhile).
    let first_connect = Duration::from_millis(config.redis.connect_timeout_ms);
    if let Err(e) = tokio::time::timeout(first_connect, redis.connect())
        .await
        .unwrap_or_else(|_| Err(LedgerError::Unavailable("timed out".into())))
    {
        tracing::warn!("Redis is not reachable yet ({e}); captures get 503 until it is");
        redis.connect_in_background();
    }
    let ledger = Ledger::start(redis.clone(), metrics.clone());
    let sweeper = sweeper::spawn(
        ledger.clone(),
        Duration::from_millis(config.ledger.sweep_interval_ms),
    );
    let accounts = Accounts::new(
        ledger.clone(),
        Duration::from_secs(config.auth.session_ttl_secs),
        config.auth.signup_bonus,
    );
    let egress = Arc::new(
        EgressPolicy::new(&config.egress.allow)
            .map_err(anyhow::Error::msg)?
            .with_hosts(&config.egress.hosts),
    );
    // The browsers' own network, whose only way out is the egress proxy.
    let namespace = if config.chromium.network_isolation {
        let namespace = Namespace::create().context(
            "cannot give the browsers a network namespace of their own (needs root, or \
             unprivileged user namespaces); without it a page's WebRTC could send UDP around the \
             egress policy. Set chromium.network_isolation = false to run anyway, knowingly",
        )?;
        Some(Arc::new(namespace))
    } else {
        tracing::warn!(
            "chromium.network_isolation is off: browsers share the host's network, and only \
             Chromium's own flags keep non-HTTP traffic (WebRTC over UDP) from the network"
        );
        None
    };
    let egress_proxy = EgressProxy::start(egress.clone(), metrics.clone(), namespace.as_deref())
        .await
        .context("cannot start the egress proxy")?;
    let placement = Placement {
        namespace,
        sandbox: config.chromium.sandbox.enabled(),
    };
    tracing::info!(
        network_isolation = placement.namespace.is_some(),
        sandbox = placement.sandbox,
        "browsers' placement"
    );
    // The filter lists' engines, built in the background (a capture that wants them first waits).
    let filters = ContentFilters::start(&config.filters);
    let farm = Farm::start(
        &config,
        metrics.clone(),
        egress_proxy.chromium_flags(),
        placement,
        filters.clone(),
    );
    let notifier =
        Notifier::new(&config, egress_proxy.addr(), egress.clone()).map_err(anyhow::Error::msg)?;
    // The bucket of store=true captures (credentials from the environment), when configured.
    let storage = Storage::from_config(&config.storage).context("[storage]")?;
    if let Some(storage) = &storage {
        tracing::info!(
            bucket = storage.bucket(),
            prefix = storage.prefix(),
            "object storage on"
        );
    }
    // The capture cache: its directory scanned once (blocking) before the API takes requests,
    // or the shared bucket.
    let cache = if config.cache.enabled {
        let (settings, metrics) = (config.cache.clone(), metrics.clone());
        let (bucket, redis) = (storage.clone(), redis.clone());
        Some(
            tokio::task::spawn_blocking(move || {
                crate::cache::Cache::open(&settings, bucket, redis, metrics)
            })
            .await
            .context("opening the capture cache")??,
        )
    } else {
        None
    };
    // Async jobs: the store (the workers' own connections come from its pool) and the workers.
    let jobs = JobStore::new(redis.clone(), &config.redis, config.jobs.workers)
        .map_err(|e| anyhow::anyhow!("[jobs]: {e}"))?;
    let live = crate::live::Live::new((*config).clone());
    let payments = Arc::new(Payments::on_live(live.clone()).map_err(anyhow::Error::msg)?);
    // Low-balance notifications: pending in Redis (queued by the charge that crossed), delivered
    // by this daemon or any other on the same Redis.
    let low_balance = LowBalance::new(
        NoticeStore::new(redis.clone()),
        notifier.clone(),
        accounts.clone(),
        live.clone(),
        metrics.clone(),
    );
    let low_balance_poller = low_balance.spawn_poller();
    let state = ApiState {
        farm: farm.clone(),
        ledger: ledger.clone(),
        accounts,
        egress,
        metrics: metrics.clone(),
        config: live.clone(),
        payments: payments.clone(),
        notifier,
        low_balance,
        cache,
        storage,
        jobs: jobs.clone(),
    };
    let parse: crate::jobs::ParseOptions = Arc::new(|options, caps| {
        api::options::parse(options, caps)
            .map(|r| (r.spec, r.timeout))
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
    });
    let workers = Workers {
        store: jobs,
        accounts: state.accounts.clone(),
        ledger: ledger.clone(),
        farm: farm.clone(),
        metrics: metrics.clone(),
        egress: state.egress.clone(),
        notifier: state.notifier.clone(),
        low_balance: state.low_balance.clone(),
        config: live.clone(),
        parse,
    }
    .spawn();
    let reloader = tokio::spawn(crate::reload::on_sighup(live, filters));

    // One signal stops both listeners from accepting; in-flight requests finish.
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = api::server::Limits::from_config(&config.server);
    let api_server = tokio::spawn(api::serve(api_listener, state, stop_rx));
    let (metrics_stop_tx, metrics_stop_rx) = watch::channel(false);
    let metrics_server = tokio::spawn(api::serve_metrics(
        metrics_listener,
        limits,
        metrics.clone(),
        farm.clone(),
        redis.clone(),
        metrics_stop_rx,
    ));

    tracing::info!(api = %bound.api, metrics = %bound.metrics, browsers = config.farm.browsers, tabs = config.farm.tabs_per_browser, "shotfarm listening");
    on_ready(bound);
    let systemd = {
        let (farm, redis, metrics) = (farm.clone(), redis.clone(), metrics.clone());
        let browsers = config.farm.browsers;
        tokio::spawn(async move {
            service_manager::announce_ready(&farm, &redis, browsers).await;
            service_manager::feed_watchdog(&farm, &metrics).await;
        })
    };

    shutdown.await;
    tracing::info!(
        grace_ms = config.server.shutdown_grace_ms,
        "shutting down: no longer accepting requests"
    );
    systemd.abort();
    service_manager::stopping();
    let _ = stop_tx.send(true);
    // Async jobs in progress here are left pending in the stream (never failed for a
    // shutdown): another daemon, or this one restarted, takes them over.
    for worker in &workers {
        worker.abort();
    }
    // Low-balance notifications not delivered yet stay in Redis: another daemon, or this one
    // restarted, delivers them (a delivery under way here goes on until the runtime ends; one
    // cut short is claimed again once its lease is over).
    low_balance_poller.abort();
    farm.shutdown(config.server.shutdown_grace()).await;
    // Requests still open got their answer when the farm closed; give them a moment to flush.
    let _ = tokio::time::timeout(Duration::from_secs(2), api_server).await;
    // Captures have settled their holds by now; holds of this daemon still open (none, unless
    // Redis was down) are left to any daemon's sweeper.
    sweeper.abort();
    reloader.abort();
    let _ = metrics_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), metrics_server).await;
    tracing::info!("shotfarm stopped");
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT; a second one exits the process at once (browsers die
/// with it through their parent-death signal).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; use SIGKILL to stop");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}
