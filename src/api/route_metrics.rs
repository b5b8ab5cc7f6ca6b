//! The HTTP metrics: each response counted and timed under its route's label (a closed set).

use std::sync::Arc;

use crate::telemetry::Metrics;

/// Closed set of route labels for `shotfarm_http_requests_total`.
fn route_label(path: &str) -> &'static str {
    match path {
        "/api/v1/screenshot" => "screenshot",
        "/api/v1/credits" => "credits",
        "/api/v1/credits/packs" => "credits_packs",
        "/api/v1/credits/transactions" => "credits_transactions",
        "/api/v1/credits/usage" => "credits_usage",
        "/api/v1/auth/signup" => "auth_signup",
        "/api/v1/auth/login" => "auth_login",
        "/api/v1/auth/logout" => "auth_logout",
        "/api/v1/me" => "me",
        "/api/v1/credits/purchase" => "credits_purchase",
        "/api/v1/credits/auto-topup" => "credits_auto_topup",
        "/api/v1/webhooks/polar" => "webhooks_polar",
        "/api/v1/keys" => "keys",
        p if p.starts_with("/api/v1/keys/") => "keys",
        p if p == "/" || p.starts_with("/dashboard") => "dashboard",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ => "other",
    }
}

/// Records every response in the HTTP metrics. The capture route's series exist from the start,
/// at zero (its successes and its server errors, which the dashboard and alerts query).
pub fn http_metrics(metrics: Arc<Metrics>) -> warp::log::Log<impl Fn(warp::log::Info<'_>) + Clone> {
    let capture = route_label("/api/v1/screenshot");
    for status in ["200", "500"] {
        metrics
            .http_requests_total
            .with_label_values(&[capture, status]);
    }
    metrics
        .http_request_duration_seconds
        .with_label_values(&[capture]);
    warp::log::custom(move |info| {
        let route = route_label(info.path());
        metrics
            .http_requests_total
            .with_label_values(&[route, info.status().as_str()])
            .inc();
        metrics
            .http_request_duration_seconds
            .with_label_values(&[route])
            .observe(info.elapsed().as_secs_f64());
    })
}
