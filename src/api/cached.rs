//! The capture cache in HTTP terms: whether a request is cached (`cache`, `cache_ttl`,
//! `cache_key` against the server's `[cache]`), a hit's answer (`x-cache: hit`, `age`, free)
//! and a miss's marks.

use std::time::{Duration, Instant};

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::{ApiError, FieldError};
use super::options::{CaptureRequest, ResponseType};
use super::ApiState;
use crate::cache::{Cache, CacheKey, Claim, Entry, FillGuard};
use crate::farm::{CaptureOutput, ImageFormat};
use crate::timestamps::now_ms;

/// How long past its deadline a capture's claim on a shared entry lasts (its answer's slack).
const FILL_SLACK: Duration = Duration::from_secs(1);

/// A request that is to be served from, or stored in, the cache.
pub struct Cached {
    pub cache: Cache,
    pub key: CacheKey,
    /// How long the entry this capture fills is served.
    pub ttl: Duration,
}

/// Whether `request` is cached, and under which key: `None` when it is not; a 400 naming the
/// field when it asks for what this server does not allow.
pub fn plan(
    state: &ApiState,
    account: &str,
    request: &CaptureRequest,
) -> Result<Option<Cached>, ApiError> {
    let config = state.config.get();
    let settings = &config.cache;
    let ask = &request.cache;
    let refuse = |field: &str, message: String| {
        ApiError::invalid(vec![FieldError {
            field: field.to_string(),
            message,
        }])
    };
    let wanted = ask
        .wanted
        .unwrap_or(settings.default_on && settings.enabled);
    if !wanted {
        return Ok(None);
    }
    let Some(cache) = state.cache.clone().filter(|_| settings.enabled) else {
        return Err(refuse(
            "cache",
            "the cache is turned off on this server (cache.enabled = false)".into(),
        ));
    };
    let ttl = ask
        .ttl
        .unwrap_or(Duration::from_secs(settings.default_ttl_secs));
    if ttl.as_secs() > settings.max_ttl_secs {
        return Err(refuse(
            "cache_ttl",
            format!(
                "must be at most {} seconds on this server",
                settings.max_ttl_secs
            ),
        ));
    }
    let key = CacheKey::new(
        account,
        &request.spec,
        ask.key.as_deref(),
        config.farm.engine,
    );
    Ok(Some(Cached { cache, key, ttl }))
}

/// What a lookup found.
pub enum Found {
    Hit(Entry),
    /// Not there: capture it, holding the guard when this request is the one filling it.
    Miss(Option<FillGuard>),
}

/// Looks the capture up; when it is being captured by another request (of this daemon, or of
/// any host with the shared cache), waits for that one (until `deadline`) and looks again. A hit is counted in the account's usage.
pub async fn look_up(state: &ApiState, account: &str, c: &Cached, deadline: Instant) -> Found {
    let mut entry = c.cache.lookup(&c.key).await;
    if entry.is_none() {
        match c.cache.claim(&c.key) {
            Claim::Fill(mut guard) => {
                // The shared cache: one host captures it; the others wait and are served.
                let hold = deadline.saturating_duration_since(Instant::now()) + FILL_SLACK;
                if c.cache.claim_shared(&mut guard, hold).await {
                    return Found::Miss(Some(guard));
                }
                c.cache.wait_for_fill(&c.key, deadline).await;
                entry = c.cache.lookup(&c.key).await;
                if entry.is_none() {
                    return Found::Miss(Some(guard));
                }
            }
            Claim::Wait(mut done) => {
                // Err when the filling request ends (its guard dropped): look again either way.
                let _ = tokio::time::timeout_at(deadline.into(), done.changed()).await;
                entry = c.cache.lookup(&c.key).await;
            }
        }
    }
    match entry {
        Some(entry) => {
            if let Err(e) = state.ledger.record_cache_hit(account).await {
                tracing::warn!("cache hit not counted: {e}");
            }
            tracing::info!("answered from the cache, not charged");
            Found::Hit(entry)
        }
        None => Found::Miss(None),
    }
}

/// The answer of a hit: the stored image (or its JSON form), free, with `x-cache: hit` and
/// the entry's `age` in seconds.
pub fn hit(
    entry: Entry,
    response_type: ResponseType,
    received: Instant,
    request_id: &str,
) -> Response {
    let meta = entry.meta;
    let format = ImageFormat::ALL
        .into_iter()
        .find(|f| f.as_str() == meta.format)
        .unwrap_or(ImageFormat::Png);
    let output = CaptureOutput {
        image: entry.image,
        format,
        width: meta.width,
        height: meta.height,
        truncated: meta.truncated,
        timings: Default::default(),
        page: meta.page,
    };
    let (mut response, _) =
        super::image_answer::success(output, response_type, received.elapsed(), request_id);
    let now = now_ms();
    let age = (now - meta.created_ms).max(0) / 1000;
    let left = Duration::from_millis(u64::try_from(meta.expires_ms - now).unwrap_or(0));
    let headers = response.headers_mut();
    headers.insert("x-cache", HeaderValue::from_static("hit"));
    headers.insert(header::AGE, HeaderValue::from(age));
    let timing = format!(
        "cache;dur={:.2}, total;dur={:.2}",
        received.elapsed().as_secs_f64() * 1e3,
        received.elapsed().as_secs_f64() * 1e3
    );
    if let Ok(v) = HeaderValue::from_str(&timing) {
        headers.insert("server-timing", v);
    }
    if let Ok(v) = HeaderValue::from_str(&meta.request_id) {
        headers.insert("x-cache-filled-by", v);
    }
    set_lifetime(&mut response, left);
    debug_assert_eq!(response.status(), StatusCode::OK);
    response
}

/// Marks a capture that was looked up and not found, then made (and is being stored).
pub fn miss(response: &mut Response, ttl: Duration) {
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static("miss"));
    set_lifetime(response, ttl);
}

/// A cached image may be kept by the caller's own browser for what is left of the entry's
/// life (never by a shared cache: the answer is one account's).
fn set_lifetime(response: &mut Response, left: Duration) {
    let value = format!("private, max-age={}", left.as_secs());
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
}
