//! Liveness, readiness and the Prometheus exporter.

use std::sync::Arc;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::farm::Farm;
use crate::ledger::RedisHandle;
use crate::telemetry::Metrics;

/// `/healthz` (the process answers) and `/readyz` (at least one browser can take work and the
/// ledger's Redis answers: without it no capture may run).
pub fn routes(
    farm: Farm,
    redis: RedisHandle,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(warp::any().map(move || (farm.clone(), redis.clone())))
        .then(|(farm, redis): (Farm, RedisHandle)| async move {
            let (status, ledger) = futures::join!(farm.status(), redis.ping());
            let ready = status.ready > 0 && status.accepting && ledger;
            let body = serde_json::json!({
                "status": if ready { "ready" } else { "not_ready" },
                "ledger": if ledger { "ok" } else { "unavailable" },
                "browsers_ready": status.ready,
                "browsers_total": status.total,
                "queue_depth": status.queue_depth,
                "in_flight": status.in_flight,
            });
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            warp::reply::with_status(warp::reply::json(&body), code).into_response()
        });
    healthz.or(readyz).unify()
}

/// The exporter's own listener: `/metrics` plus the probes.
pub fn metrics_routes(
    metrics: Arc<Metrics>,
    farm: Farm,
    redis: RedisHandle,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let metrics_for_log = metrics.clone();
    let redis_for_scrape = redis.clone();
    let exporter = warp::path!("metrics").and(warp::get()).then(move || {
        let (metrics, redis) = (metrics.clone(), redis_for_scrape.clone());
        async move {
            // Fresh at every scrape, whether or not captures ran since the last one.
            metrics.redis_up.set(i64::from(redis.ping().await));
            warp::reply::with_header(
                metrics.render(),
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .into_response()
        }
    });
    exporter
        .or(routes(farm, redis))
        .unify()
        .recover(super::recover)
        .unify()
        .with(super::http_metrics(metrics_for_log))
}
