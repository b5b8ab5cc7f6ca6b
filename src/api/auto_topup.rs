//! Auto top-up settings (as the contract describes it: a prompt, not a silent charge):
//! `GET /api/v1/credits/auto-topup` (key or session) and `PUT` (session) with
//! `{enabled, threshold, packId}`, any subset; the rest is kept.

use bytes::Bytes;
use serde::Deserialize;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::auth::{authenticate, Allow};
use super::errors::{ApiError, FieldError};
use super::json::{json_body, json_response, limited_body};
use super::{with_request_id, ApiState};

/// Highest threshold accepted.
const MAX_THRESHOLD: i64 = 1_000_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Update {
    enabled: Option<bool>,
    threshold: Option<i64>,
    pack_id: Option<String>,
}

async fn show(state: ApiState, headers: HeaderMap) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::KeyOrSession).await?;
    let settings = state.accounts.auto_topup(&who.account).await?;
    Ok(json_response(StatusCode::OK, &settings))
}

async fn update(
    state: ApiState,
    headers: HeaderMap,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::SessionOnly).await?;
    let req: Update = json_body(&body?)?;
    let mut settings = state.accounts.auto_topup(&who.account).await?;
    let mut errors = Vec::new();
    if let Some(threshold) = req.threshold {
        if (1..=MAX_THRESHOLD).contains(&threshold) {
            settings.threshold = threshold;
        } else {
            errors.push(FieldError {
                field: "threshold".into(),
                message: format!("must be an integer from 1 to {MAX_THRESHOLD}"),
            });
        }
    }
    if let Some(pack) = req.pack_id {
        if state.payments.pack(&pack).is_some() {
            settings.pack_id = pack;
        } else {
            errors.push(FieldError {
                field: "packId".into(),
                message: format!("no pack has the id `{pack}`"),
            });
        }
    }
    if let Some(enabled) = req.enabled {
        settings.enabled = enabled;
    }
    if errors.is_empty() && settings.enabled {
        if settings.threshold < 1 {
            errors.push(FieldError {
                field: "threshold".into(),
                message: "is required to enable auto top-up".into(),
            });
        }
        if settings.pack_id.is_empty() {
            errors.push(FieldError {
                field: "packId".into(),
                message: "is required to enable auto top-up".into(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    state
        .accounts
        .set_auto_topup(&who.account, &settings)
        .await?;
    Ok(json_response(StatusCode::OK, &settings))
}

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let show = warp::path!("api" / "v1" / "credits" / "auto-topup")
        .and(warp::get())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .then(|id: String, s, h| super::answer(id, show(s, h)));
    let update = warp::path!("api" / "v1" / "credits" / "auto-topup")
        .and(warp::put())
        .and(with_request_id())
        .and(with_state)
        .and(warp::header::headers_cloned())
        .and(limited_body(16 * 1024))
        .then(|id: String, s, h, b| super::answer(id, update(s, h, b)));
    show.or(update).unify()
}
