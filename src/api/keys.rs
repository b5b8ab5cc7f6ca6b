//! API keys of the logged-in account: `POST /api/v1/keys` (the secret is shown once),
//! `GET /api/v1/keys`, `DELETE /api/v1/keys/{id}`, and each key's link-signing secret (signed
//! image links, `api::signed_links`): `POST /api/v1/keys/{id}/signing-secret` (made or replaced,
//! shown once), `DELETE /api/v1/keys/{id}/signing-secret`. Session only: a leaked API key cannot
//! mint or revoke keys or signing secrets.

use bytes::Bytes;
use serde::Deserialize;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::auth::{authenticate, Allow};
use super::errors::ApiError;
use super::json::{iso_time, json_body, json_response, limited_body};
use super::{with_request_id, ApiState};
use crate::accounts::{AccountError, ApiKeyInfo};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    name: Option<String>,
}

fn key_json(k: &ApiKeyInfo) -> serde_json::Value {
    serde_json::json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "createdAt": iso_time(k.created_ms),
        "lastUsedAt": k.last_used_ms.map(iso_time),
        "signingSecretCreatedAt": k.signing_secret_since_ms.map(iso_time),
    })
}

async fn create(
    state: ApiState,
    headers: HeaderMap,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::SessionOnly).await?;
    let body = body?;
    let req: NewKey = if body.iter().all(u8::is_ascii_whitespace) {
        NewKey::default()
    } else {
        json_body(&body)?
    };
    let name = req.name.unwrap_or_else(|| "default".to_string());
    let (info, secret) = state.accounts.create_key(&who.account, &name).await?;
    let mut value = key_json(&info);
    value["key"] = serde_json::Value::String(secret);
    Ok(json_response(StatusCode::CREATED, &value))
}

async fn list(state: ApiState, headers: HeaderMap) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::SessionOnly).await?;
    let keys = state.accounts.list_keys(&who.account).await?;
    let keys: Vec<_> = keys.iter().map(key_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "keys": keys }),
    ))
}

async fn revoke(state: ApiState, headers: HeaderMap, key_id: String) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::SessionOnly).await?;
    if !state.accounts.revoke_key(&who.account, &key_id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this account has no such API key",
        ));
    }
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

fn no_such_key() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "this account has no such API key",
    )
}

/// Makes the key's signing secret, or replaces it: links signed with the old one stop working.
async fn rotate_signing_secret(
    state: ApiState,
    headers: HeaderMap,
    key_id: String,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::SessionOnly).await?;
    let made = match state
        .accounts
        .rotate_signing_secret(&who.account, &key_id)
        .await
    {
        Err(AccountError::NotFound) => return Err(no_such_key()),
        other => other?,
    };
    tracing::info!(key_id = %key_id, "link-signing secret made");
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({
            "keyId": key_id,
            "signingSecret": made.secret,
            "createdAt": iso_time(made.created_ms),
        }),
    ))
}

async fn revoke_signing_secret(
    state: ApiState,
    headers: HeaderMap,
    key_id: String,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::SessionOnly).await?;
    match state
        .accounts
        .revoke_signing_secret(&who.account, &key_id)
        .await
    {
        Err(AccountError::NotFound) => return Err(no_such_key()),
        other => other?,
    }
    tracing::info!(key_id = %key_id, "link-signing secret revoked");
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let create = warp::path!("api" / "v1" / "keys")
        .and(warp::post())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .and(limited_body(16 * 1024))
        .then(|id: String, s, h, b| super::answer(id, create(s, h, b)));
    let list = warp::path!("api" / "v1" / "keys")
        .and(warp::get())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .then(|id: String, s, h| super::answer(id, list(s, h)));
    let revoke = warp::path!("api" / "v1" / "keys" / String)
        .and(warp::delete())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .then(|key: String, id: String, s, h| super::answer(id, revoke(s, h, key)));
    let signing_secret = warp::path!("api" / "v1" / "keys" / String / "signing-secret");
    let rotate = signing_secret
        .and(warp::post())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .then(|key: String, id: String, s, h| super::answer(id, rotate_signing_secret(s, h, key)));
    let unsign = signing_secret
        .and(warp::delete())
        .and(with_request_id())
        .and(with_state)
        .and(warp::header::headers_cloned())
        .then(|key: String, id: String, s, h| super::answer(id, revoke_signing_secret(s, h, key)));
    create
        .or(list)
        .unify()
        .or(revoke)
        .unify()
        .or(rotate)
        .unify()
        .or(unsign)
        .unify()
}
