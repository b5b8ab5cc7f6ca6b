//! Who is calling: API keys (`x-api-key`, `Authorization: Bearer`) and the `session` cookie;
//! and the account routes `POST /api/v1/auth/signup|login|logout`, `GET /api/v1/me`.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::Deserialize;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::errors::{ledger_unavailable, ApiError};
use super::json::{iso_time, json_body, json_response, limited_body};
use super::{with_request_id, ApiState};
use crate::accounts::{Account, AccountError, Principal};

/// Which credentials an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// API keys and sessions (captures, credits).
    KeyOrSession,
    /// Only a logged-in session (account and key management).
    SessionOnly,
}

/// The `session` cookie's value, if any. Not a credential by itself: see [`session_credential`].
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "session")
        .map(|(_, value)| value.trim_matches('"').to_string())
}

fn api_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(v) = headers.get("x-api-key") {
        let key = v.to_str().map_err(|_| invalid_key())?.trim();
        return Ok(Some(key.to_string()));
    }
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| invalid_key())?;
        let Some((scheme, token)) = v.trim().split_once(' ') else {
            return Err(invalid_key());
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authorization must use the Bearer scheme with an API key",
            ));
        }
        return Ok(Some(token.trim().to_string()));
    }
    Ok(None)
}

fn invalid_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "the API key is not valid (it may have been revoked)",
    )
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::EmailTaken => {
                ApiError::new(StatusCode::CONFLICT, "email_taken", e.to_string())
            }
            AccountError::Invalid(why) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", why)
            }
            AccountError::BadCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong email or password",
            ),
            AccountError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such account")
            }
            AccountError::Ledger(e) => ledger_unavailable(e),
        }
    }
}

/// The session token of a request that will be authenticated by its cookie, once the request
/// has passed the origin check (403 `cross_site_request` otherwise), whatever its method. The
/// only place the `session` cookie is read as a credential: authenticated by the cookie ⇒
/// origin checked.
pub fn session_credential(
    state: &ApiState,
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    let Some(token) = session_cookie(headers) else {
        return Ok(None);
    };
    let public_origin = super::csrf::origin_of(&state.config.get().auth.public_url);
    if let Some(why) = super::csrf::cross_site(headers, &public_origin) {
        tracing::info!("cross-site request with the session cookie refused: {why}");
        return Err(super::csrf::refusal());
    }
    Ok(Some(token))
}

/// Finds the caller. A request that presents an API key (`x-api-key` or `Authorization`) is
/// authenticated by that key or refused — never by a session cookie it also carries, and never
/// on a session-only endpoint. Otherwise the `session` cookie, origin-checked
/// ([`session_credential`]).
pub async fn authenticate(
    state: &ApiState,
    headers: &HeaderMap,
    allow: Allow,
) -> Result<Principal, ApiError> {
    if let Some(key) = api_key(headers)? {
        return match allow {
            Allow::KeyOrSession => state
                .accounts
                .authenticate_key(&key)
                .await?
                .ok_or_else(invalid_key),
            Allow::SessionOnly => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint takes a logged-in session, not an API key: send no x-api-key or Authorization header",
            )),
        };
    }
    if let Some(token) = session_credential(state, headers)? {
        if let Some(account) = state.accounts.session_account(&token).await? {
            return Ok(Principal {
                account,
                key_id: None,
            });
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "session_expired",
            "the session has expired or was logged out; log in again",
        ));
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        match allow {
            Allow::KeyOrSession => {
                "authentication required: send an API key in x-api-key or Authorization: Bearer, or a session cookie"
            }
            Allow::SessionOnly => "log in first: this endpoint needs a session cookie",
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

fn session_cookie_header(state: &ApiState, token: &str, max_age: u64) -> HeaderValue {
    let auth = &state.config.get().auth;
    let secure = if auth.secure_cookies || auth.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie =
        format!("session={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| HeaderValue::from_static("session=; Max-Age=0"))
}

async fn account_json(state: &ApiState, account: &Account) -> serde_json::Value {
    let balance = state
        .ledger
        .balance(&account.id)
        .await
        .ok()
        .flatten()
        .map(|b| b.available);
    serde_json::json!({
        "id": account.id,
        "email": account.email,
        "createdAt": iso_time(account.created_ms),
        "balance": balance,
    })
}

/// Counts an attempt against the client address's limit (and the email's, for a log-in):
/// 429 `rate_limited` with Retry-After beyond either.
async fn throttle(
    state: &ApiState,
    address: Option<SocketAddr>,
    login_email: Option<&str>,
) -> Result<(), ApiError> {
    let mut verdicts = Vec::new();
    if let (Some(limiter), Some(address)) = (state.address_limiter(), address) {
        verdicts.push(
            limiter
                .check_address(&address.ip().to_string())
                .await
                .map_err(ledger_unavailable)?,
        );
    }
    if let (Some(limiter), Some(email)) = (state.login_limiter(), login_email) {
        verdicts.push(
            limiter
                .check_login(email)
                .await
                .map_err(ledger_unavailable)?,
        );
    }
    match verdicts
        .iter()
        .filter(|v| !v.allowed)
        .map(|v| v.retry_after)
        .max()
    {
        None => Ok(()),
        Some(wait) => {
            tracing::info!(?address, "authentication attempts throttled");
            Err(super::rate_limit::rate_limited(
                "too many attempts; wait a moment and try again",
                wait,
            ))
        }
    }
}

async fn signup(
    state: ApiState,
    address: Option<SocketAddr>,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let body = body?;
    if !state.config.get().auth.signup_enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "signup_disabled",
            "sign-up is closed on this server; ask its operator for an account",
        ));
    }
    let c: Credentials = json_body(&body)?;
    throttle(&state, address, None).await?;
    let account = state.accounts.create(&c.email, Some(&c.password)).await?;
    logged_in(&state, &account, StatusCode::CREATED).await
}

async fn login(
    state: ApiState,
    address: Option<SocketAddr>,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let body = body?;
    let c: Credentials = json_body(&body)?;
    throttle(&state, address, Some(&c.email)).await?;
    let account = state.accounts.login(&c.email, &c.password).await?;
    logged_in(&state, &account, StatusCode::OK).await
}

async fn logged_in(
    state: &ApiState,
    account: &Account,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let token = state.accounts.create_session(&account.id).await?;
    let mut response = json_response(status, &account_json(state, account).await);
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(state, &token, state.config.get().auth.session_ttl_secs),
    );
    Ok(response)
}

async fn logout(state: ApiState, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = session_credential(&state, &headers)? {
        state.accounts.revoke_session(&token).await?;
    }
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie_header(&state, "", 0));
    Ok(response)
}

async fn me(state: ApiState, headers: HeaderMap) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers, Allow::KeyOrSession).await?;
    let account = state
        .accounts
        .get(&principal.account)
        .await?
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "no such account")
        })?;
    Ok(json_response(
        StatusCode::OK,
        &account_json(&state, &account).await,
    ))
}

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let max_body = 64 * 1024;
    let with_state = warp::any().map(move || state.clone());
    let signup = warp::path!("api" / "v1" / "auth" / "signup")
        .and(warp::post())
        .and(with_request_id())
        .and(with_state.clone())
        .and(super::server::client_addr())
        .and(limited_body(max_body))
        .then(|id: String, s, a, b| super::answer(id, signup(s, a, b)));
    let login = warp::path!("api" / "v1" / "auth" / "login")
        .and(warp::post())
        .and(with_request_id())
        .and(with_state.clone())
        .and(super::server::client_addr())
        .and(limited_body(max_body))
        .then(|id: String, s, a, b| super::answer(id, login(s, a, b)));
    let logout = warp::path!("api" / "v1" / "auth" / "logout")
        .and(warp::post())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .then(|id: String, s, h| super::answer(id, logout(s, h)));
    let me = warp::path!("api" / "v1" / "me")
        .and(warp::get())
        .and(with_request_id())
        .and(with_state)
        .and(warp::header::headers_cloned())
        .then(|id: String, s, h| super::answer(id, me(s, h)));
    signup.or(login).unify().or(logout).unify().or(me).unify()
}
