//! Auto top-up settings (as the contract describes it: a prompt, not a silent charge):
//! `GET /api/v1/credits/auto-topup` (key or session) and `PUT` (session) with
//! `{enabled, threshold, packId, notificationUrl}`, any subset; the rest is kept. A
//! notification URL (null or "" clears it) must be http(s) and pass the egress policy; the
//! answer then carries the `notificationSecret` its notifications are signed with.

use bytes::Bytes;
use serde::Deserialize;
use url::Url;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::auth::{authenticate, Allow};
use super::errors::{ApiError, FieldError};
use super::json::{json_body, json_response, limited_body};
use super::{with_request_id, ApiState};
use crate::accounts::AutoTopup;

/// Highest threshold accepted.
const MAX_THRESHOLD: i64 = 1_000_000_000;
/// Longest notification URL accepted.
const MAX_URL_LEN: usize = 2048;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Update {
    enabled: Option<bool>,
    threshold: Option<i64>,
    pack_id: Option<String>,
    /// Absent: unchanged; `null` or `""`: cleared.
    #[serde(default, deserialize_with = "present")]
    notification_url: Option<Option<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The settings as the endpoint shows them: with the notification secret.
fn settings_json(settings: &AutoTopup) -> serde_json::Value {
    let mut value = serde_json::to_value(settings).unwrap_or_default();
    value["notificationSecret"] = settings.notification_secret.clone().into();
    value
}

async fn show(state: ApiState, headers: HeaderMap) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::KeyOrSession).await?;
    let settings = state.accounts.auto_topup(&who.account).await?;
    Ok(json_response(StatusCode::OK, &settings_json(&settings)))
}

/// A notification URL as given: `Ok(None)` clears it.
async fn notification_url(state: &ApiState, raw: &str) -> Result<Option<String>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let field = |message: String| {
        ApiError::invalid(vec![FieldError {
            field: "notificationUrl".into(),
            message,
        }])
    };
    if raw.len() > MAX_URL_LEN {
        return Err(field(format!("must be at most {MAX_URL_LEN} characters")));
    }
    let url = match Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
        _ => return Err(field("must be an absolute http or https URL".into())),
    };
    if let Err(blocked) = state.egress.check_url(&url).await {
        let mut error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "url_not_allowed",
            blocked.to_string(),
        );
        error.details = vec![FieldError {
            field: "notificationUrl".into(),
            message: blocked.to_string(),
        }];
        return Err(error);
    }
    Ok(Some(url.to_string()))
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
    // A refused URL alone is `url_not_allowed`; with other problems, all are listed.
    let mut url_error = None;
    if let Some(url) = req.notification_url {
        match notification_url(&state, url.as_deref().unwrap_or("")).await {
            Ok(url) => settings.notification_url = url,
            Err(e) => url_error = Some(e),
        }
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
    match url_error {
        Some(e) if errors.is_empty() => return Err(e),
        Some(e) => errors.extend(e.details),
        None => {}
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    state
        .accounts
        .set_auto_topup(&who.account, &mut settings)
        .await?;
    Ok(json_response(StatusCode::OK, &settings_json(&settings)))
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
