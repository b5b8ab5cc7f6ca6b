//! The HTTP layer (warp): the only module that knows HTTP. Routes talk to the farm through its
//! address ([`Farm`]) and message types, never through actor structs.
//!
//! - [`screenshot`]: `GET`/`POST /api/v1/screenshot`, each capture a credit hold.
//! - [`billing`]: the credit side of a capture in HTTP: idempotency, 402, replays.
//! - [`jobs`]: `async=true` (202 and the job) and `GET /api/v1/screenshots/{id}[/image]`.
//! - [`store_answer`]: `store=true`: the capture uploaded to the bucket, answered by its URL.
//! - [`options`]: capture options and their validation.
//! - [`auth`]: who is calling (API keys, session cookie) and the account routes.
//! - [`keys`]: API key management, and each key's link-signing secret.
//! - [`signed_links`]: captures by a signed link (an HMAC in the query instead of a key).
//! - [`credits`]: balance, packs and transaction history.
//! - [`errors`], [`json`]: the JSON error body and status mapping; JSON helpers.
//! - [`probes`]: `/healthz`, `/readyz` and the Prometheus exporter's routes.
//! - [`dashboard`]: the customer dashboard's embedded files at `/dashboard`.
//! - [`csrf`]: strict origin checking of state-changing browser requests.
//! - [`payments`], [`auto_topup`]: buying credits and the low-balance settings.
//! - [`openapi`]: the OpenAPI document of all of it, at `/api/v1/openapi.json`.
//! - [`server`]: the listeners' accept loop: connection caps, header and idle timeouts, head size.
//! - `state` ([`ApiState`]), `request_id` ([`answer`] and the `x-request-id`), `route_metrics`
//!   ([`http_metrics`]), `recovery` (rejections as JSON errors): what every route shares.

pub(crate) mod auth;
pub(crate) mod auto_topup;
pub(crate) mod billing;
pub(crate) mod cached;
pub(crate) mod credits;
pub(crate) mod csrf;
pub(crate) mod dashboard;
pub(crate) mod errors;
pub(crate) mod image_answer;
pub(crate) mod jobs;
pub(crate) mod json;
pub(crate) mod keys;
pub(crate) mod openapi;
pub mod options;
pub(crate) mod payments;
pub(crate) mod probes;
pub(crate) mod rate_limit;
pub(crate) mod screenshot;
pub(crate) mod server;
pub(crate) mod signed_links;
pub(crate) mod store_answer;

mod recovery;
mod request_id;
mod route_metrics;
mod state;

use std::sync::Arc;

use warp::Filter;

use crate::farm::Farm;
use crate::telemetry::Metrics;
use recovery::recover;

pub use request_id::{answer, request_id, set_request_id, with_request_id};
pub use route_metrics::http_metrics;
pub use state::ApiState;

/// Serves the public API on `listener` until `stop` turns true (then lets open requests finish).
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState, stop: WatchStop) {
    let config = state.config.get();
    let limits = server::Limits::from_config(&config.server);
    let metrics = state.metrics.clone();
    server::serve(
        listener,
        warp::service(routes(state)),
        limits,
        Some(metrics),
        stop,
    )
    .await;
}

/// Serves the Prometheus exporter and probes on `listener` (same connection limits, not
/// counted in the metrics) until `stop` turns true.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    limits: server::Limits,
    metrics: Arc<Metrics>,
    farm: Farm,
    redis: crate::ledger::RedisHandle,
    stop: WatchStop,
) {
    let routes = probes::metrics_routes(metrics, farm, redis);
    server::serve(listener, warp::service(routes), limits, None, stop).await;
}

/// The signal that stops a listener: turns `true` once.
pub type WatchStop = tokio::sync::watch::Receiver<bool>;

/// The public API: screenshots and probes, with JSON errors for anything else.
pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let metrics = state.metrics.clone();
    let same_site = csrf::filter(&state.config.get().auth.public_url);
    let api = screenshot::routes(state.clone())
        .or(jobs::routes(state.clone()))
        .unify()
        .or(credits::routes(state.clone()))
        .unify()
        .or(auth::routes(state.clone()))
        .unify()
        .or(keys::routes(state.clone()))
        .unify()
        .or(payments::routes(state.clone()))
        .unify()
        .or(auto_topup::routes(state.clone()))
        .unify()
        .or(openapi::routes(state.clone()))
        .unify()
        .or(probes::routes(
            state.farm.clone(),
            state.ledger.redis().clone(),
        ))
        .unify();
    dashboard::routes()
        .or(same_site.and(api))
        .unify()
        .recover(recover)
        .unify()
        .with(http_metrics(metrics))
}
