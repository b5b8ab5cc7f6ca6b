//! The customer dashboard: plain HTML, CSS and JavaScript embedded in the binary (no Node
//! toolchain to build or run it), served at `/dashboard`. Every page path serves the same
//! `index.html`; the script routes on the path and talks to the JSON API with the session cookie.
//! Responses carry a strict Content-Security-Policy (scripts and styles from this origin only,
//! no inline code) and refuse to be framed.

use sha2::Digest as _;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

const INDEX: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../assets/dashboard/app.css");
const FAVICON: &str = include_str!("../../assets/dashboard/favicon.svg");

/// The pages the script knows; anything else under `/dashboard/` is a 404.
const PAGES: [&str; 7] = [
    "login",
    "signup",
    "credits",
    "settings",
    "keys",
    "playground",
    "usage",
];

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; font-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A file with its content type and a strong validator.
fn file(body: &'static str, content_type: &'static str, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", &hex::encode(sha2::Sha256::digest(body))[..32]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        let mut r = Response::new(Default::default());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(body.into());
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let h = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    // Not fingerprinted: revalidate every time (a 304 costs nothing), so an upgrade shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(h);
    response
}

/// The headers every dashboard response carries.
fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
}

fn redirect(to: &'static str) -> Response {
    let mut r = Response::new(Default::default());
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn asset(name: &str, headers: &HeaderMap) -> Option<Response> {
    Some(match name {
        "app.js" => file(APP_JS, "text/javascript; charset=utf-8", headers),
        "app.css" => file(APP_CSS, "text/css; charset=utf-8", headers),
        "favicon.svg" => file(FAVICON, "image/svg+xml", headers),
        _ => return None,
    })
}

pub fn routes() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let root = warp::path::end()
        .and(warp::get())
        .map(|| redirect("/dashboard"));
    let index = warp::path!("dashboard")
        .or(warp::path!("dashboard" / ..).and(warp::path::end()))
        .unify()
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .map(|h: HeaderMap| file(INDEX, "text/html; charset=utf-8", &h));
    let page = warp::path!("dashboard" / String)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and_then(|page: String, h: HeaderMap| async move {
            if PAGES.contains(&page.as_str()) {
                Ok(file(INDEX, "text/html; charset=utf-8", &h))
            } else {
                Err(warp::reject::not_found())
            }
        });
    let assets = warp::path!("dashboard" / "assets" / String)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and_then(|name: String, h: HeaderMap| async move {
            asset(&name, &h).ok_or_else(warp::reject::not_found)
        });
    root.or(index).unify().or(assets).unify().or(page).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_files_it_is_served_with_and_no_inline_code() {
        for path in ["/dashboard/assets/app.js", "/dashboard/assets/app.css"] {
            assert!(INDEX.contains(path), "index.html loads {path}");
        }
        // The CSP forbids inline code: none may be written.
        assert!(!INDEX.contains("<script>"), "inline script");
        assert!(!INDEX.contains(" style=\""), "inline style");
        for handler in [" onclick=", " onload=", " onsubmit=", " onerror="] {
            assert!(!INDEX.contains(handler), "inline handler {handler}");
        }
        assert!(
            !APP_JS.contains("innerHTML"),
            "innerHTML with server strings"
        );
        assert!(!APP_JS.contains("eval("));
    }

    #[test]
    fn a_revalidation_with_the_current_etag_is_a_304() {
        let first = file(APP_CSS, "text/css", &HeaderMap::new());
        let etag = first.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        let again = file(APP_CSS, "text/css", &headers);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
