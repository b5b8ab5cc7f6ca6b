//! Cross-site request forgery defence for the cookie-authenticated dashboard: strict origin
//! checking, decided by the headers a browser adds to every request.
//!
//! A browser names the page a request comes from: `Sec-Fetch-Site` (every current browser) and
//! `Origin` (on every state-changing and every cross-origin request). A request is cross-site
//! when either says it comes from another site: `Sec-Fetch-Site` other than `same-origin` or
//! `none`, or an `Origin` that is neither this service's public origin nor the origin of the host
//! the request was sent to. Requests without both headers are not from a browser page (curl,
//! SDKs, the contract's snippets).
//!
//! Two rules use it, and together they leave no request that a cross-site page can make with
//! the visitor's cookie:
//!
//! - **Authenticated by the cookie ⇒ origin checked** ([`cross_site`]), whatever the method:
//!   `api::auth::session_credential` is the only place that reads the `session` cookie as a
//!   credential, and it refuses a cross-site request before looking the session up. A GET
//!   capture spends a credit, so it is checked like any other. A request that presents an API
//!   key (`x-api-key`, `Authorization`) is authenticated by that key or refused — never by the
//!   cookie it may also carry.
//! - **Every state-changing request** (`POST`, `PUT`, `PATCH`, `DELETE`) is checked at the route
//!   level ([`filter`]) even when it authenticates nobody (log-in and sign-up: log-in CSRF),
//!   except requests presenting an API key (never sent automatically, and they cannot fall back
//!   to the cookie) and Polar's server-to-server webhook, which is signed.
//!
//! With `SameSite=Strict` on the session cookie, a browser does not even send it cross-site.

use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

use super::errors::ApiError;

/// The rejection of a cross-site request (turned into the JSON error by `api::recover`).
#[derive(Debug)]
pub struct CrossSite(pub String);

impl warp::reject::Reject for CrossSite {}

/// Paths that are signed server-to-server deliveries, never browser requests.
const EXEMPT: [&str; 1] = ["/api/v1/webhooks/polar"];

/// The 403 every refused cross-site request gets.
pub fn refusal() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_site_request",
        "this request came from another site's page; requests authenticated by the session cookie, and state-changing requests, must come from this service's own pages or carry an API key",
    )
}

/// Why a request comes from another site's page, or `None` (same origin, or not from a page).
pub fn cross_site(headers: &HeaderMap, public_origin: &str) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Some(format!("Sec-Fetch-Site is {site}"));
        }
    }
    let origin = text("origin")?;
    let own = text("host").is_some_and(|host| {
        origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host))
    });
    let public = !public_origin.is_empty()
        && public_origin != "null"
        && origin.eq_ignore_ascii_case(public_origin);
    if own || public {
        None
    } else {
        Some(format!("Origin {origin} is not this site"))
    }
}

/// Why a request must be refused at the route level, or `None`: a state-changing request from
/// another site's page that presents no API key.
pub fn verdict(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    public_origin: &str,
) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || EXEMPT.contains(&path) {
        return None;
    }
    if headers.contains_key("x-api-key") || headers.contains_key("authorization") {
        return None;
    }
    cross_site(headers, public_origin)
}

/// The origin (`scheme://host[:port]`) of `auth.public_url`.
pub fn origin_of(public_url: &str) -> String {
    match url::Url::parse(public_url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => String::new(),
    }
}

/// Passes same-site and non-browser requests; rejects cross-site state changes.
pub fn filter(public_url: &str) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    let public_origin = origin_of(public_url);
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and_then(
            move |method: Method, path: warp::path::FullPath, headers: HeaderMap| {
                let refused = verdict(&method, path.as_str(), &headers, &public_origin);
                async move {
                    match refused {
                        Some(why) => Err(warp::reject::custom(CrossSite(why))),
                        None => Ok(()),
                    }
                }
            },
        )
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    const PUBLIC: &str = "https://shots.example";

    fn refused(method: Method, path: &str, pairs: &[(&'static str, &'static str)]) -> bool {
        verdict(&method, path, &headers(pairs), PUBLIC).is_some()
    }

    #[test]
    fn state_changes_from_other_sites_are_refused() {
        let p = "/api/v1/keys";
        let host = ("host", "127.0.0.1:8080");
        for pairs in [
            vec![host, ("origin", "https://evil.example")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://127.0.0.1:8081")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![
                host,
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://127.0.0.1:8080"),
            ],
            vec![("origin", "https://shots.example.evil.test")],
        ] {
            for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
                assert!(refused(m, p, &pairs), "{pairs:?}");
            }
        }
    }

    #[test]
    fn same_site_reads_keys_webhooks_and_non_browsers_pass() {
        let host = ("host", "127.0.0.1:8080");
        let p = "/api/v1/credits/purchase";
        for pairs in [
            vec![host, ("origin", "http://127.0.0.1:8080")],
            vec![host, ("origin", "https://shots.example")],
            vec![host, ("origin", "HTTPS://SHOTS.EXAMPLE")],
            vec![
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:8080"),
            ],
            vec![host, ("sec-fetch-site", "none")],
            vec![host],
            vec![
                host,
                ("origin", "https://evil.example"),
                ("x-api-key", "sk_x"),
            ],
            vec![
                host,
                ("origin", "https://evil.example"),
                ("authorization", "Bearer sk_x"),
            ],
        ] {
            assert!(!refused(Method::POST, p, &pairs), "{pairs:?}");
        }
        let evil = [host, ("origin", "https://evil.example")];
        assert!(!refused(Method::GET, p, &evil));
        assert!(!refused(Method::POST, "/api/v1/webhooks/polar", &evil));
    }

    #[test]
    fn cookie_requests_are_checked_whatever_the_method() {
        let host = ("host", "127.0.0.1:8080");
        let check = |pairs: &[(&'static str, &'static str)]| cross_site(&headers(pairs), PUBLIC);
        assert!(check(&[host, ("sec-fetch-site", "cross-site")]).is_some());
        assert!(check(&[host, ("origin", "https://evil.example")]).is_some());
        // A key header does not make a cookie request same-site.
        assert!(check(&[
            host,
            ("origin", "https://evil.example"),
            ("x-api-key", "sk_x")
        ])
        .is_some());
        assert!(check(&[host, ("sec-fetch-site", "same-origin")]).is_none());
        assert!(check(&[host, ("origin", "http://127.0.0.1:8080")]).is_none());
        assert!(check(&[host]).is_none());
    }

    #[test]
    fn the_public_origin_is_scheme_host_and_port() {
        assert_eq!(origin_of("https://shots.example/"), "https://shots.example");
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(
            origin_of("https://a.example:8443/x"),
            "https://a.example:8443"
        );
        assert_eq!(origin_of("not a url"), "");
    }
}
