//! Buying credits: `POST /api/v1/credits/purchase` (session) → a Polar checkout URL, and
//! `POST /api/v1/webhooks/polar`, where Polar's signed deliveries credit the account.

use crate::telemetry::events::{
    InternalEvent, WebhookEvent, WebhookHandled, WebhookRefused, WebhookResult,
};
use bytes::Bytes;
use serde::Deserialize;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::auth::{authenticate, Allow};
use super::errors::ledger_unavailable;
use super::errors::ApiError;
use super::json::{json_body, json_response, limited_body};
use super::{with_request_id, ApiState};
use crate::payments::PaymentsError;

/// Largest webhook body accepted (Polar's order events are a few KiB).
const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Purchase {
    pack_id: String,
    /// Set by the low-balance prompt (auto top-up): the order is recorded as `auto_topup`.
    #[serde(default)]
    auto_topup: bool,
}

fn payments_error(e: PaymentsError) -> ApiError {
    match e {
        PaymentsError::UnknownPack(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "unknown_pack", e.to_string())
        }
        PaymentsError::NotConfigured => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payments_not_configured",
            e.to_string(),
        ),
        PaymentsError::Provider(inner) => {
            tracing::warn!(target: "payments", "checkout failed: {inner}");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "payment_provider_error",
                "the payment provider could not start a checkout; try again shortly",
            )
        }
        PaymentsError::BadSignature(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string())
        }
        PaymentsError::BadPayload(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string())
        }
        PaymentsError::NotCreditedYet(_) => {
            ApiError::new(StatusCode::CONFLICT, "order_not_credited", e.to_string())
        }
        PaymentsError::Ledger(inner) => ledger_unavailable(inner),
    }
}

async fn purchase(
    state: ApiState,
    headers: HeaderMap,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::SessionOnly).await?;
    let req: Purchase = json_body(&body?)?;
    let email = state
        .accounts
        .get(&who.account)
        .await?
        .map(|a| a.email)
        .unwrap_or_default();
    let url = state
        .payments
        .checkout(&who.account, &email, &req.pack_id, req.auto_topup)
        .await
        .map_err(payments_error)?;
    tracing::info!(target: "payments", pack = %req.pack_id, auto_topup = req.auto_topup, "checkout created");
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "checkoutUrl": url }),
    ))
}

async fn polar_webhook(
    state: ApiState,
    headers: HeaderMap,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let body = body?;
    let handled = state
        .payments
        .handle_webhook(&state.ledger, &headers, &body)
        .await;
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match handled {
        Ok((event, handled)) => {
            WebhookHandled {
                event: WebhookEvent::of(&event),
                result: handled.result(),
                webhook_id,
                detail: &handled,
            }
            .emit(&state.metrics);
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "received": true }),
            ))
        }
        Err(e) => {
            let (event, result) = match e {
                PaymentsError::Ledger(_) => (WebhookEvent::Other, WebhookResult::Error),
                PaymentsError::NotCreditedYet(_) => {
                    (WebhookEvent::OrderRefunded, WebhookResult::Retry)
                }
                _ => (WebhookEvent::Other, WebhookResult::Rejected),
            };
            WebhookRefused {
                event,
                result,
                webhook_id,
                error: &e,
            }
            .emit(&state.metrics);
            Err(payments_error(e))
        }
    }
}

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let purchase = warp::path!("api" / "v1" / "credits" / "purchase")
        .and(warp::post())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .and(limited_body(16 * 1024))
        .then(|id: String, s, h, b| super::answer(id, purchase(s, h, b)));
    let webhook = warp::path!("api" / "v1" / "webhooks" / "polar")
        .and(warp::post())
        .and(with_request_id())
        .and(with_state)
        .and(warp::header::headers_cloned())
        .and(limited_body(MAX_WEBHOOK_BYTES))
        .then(|id: String, s, h, b| super::answer(id, polar_webhook(s, h, b)));
    purchase.or(webhook).unify()
}
