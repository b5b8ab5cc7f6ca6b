//! Signed image links: `GET /api/v1/screenshot?…&key_id=…&expires=…&signature=…`, a capture URL
//! that carries an HMAC instead of the API key, so it can sit in an `<img src>` or an `og:image`
//! tag. The rule, as README.md ("Signed links") states it:
//!
//! - `signature` is the lower-case hex HMAC-SHA256, keyed by the API key's signing secret (its
//!   text, `lsk_…`, as shown once), of the URL's raw query string exactly as sent, up to and not
//!   including `&signature=`. Nothing is decoded or re-encoded before the HMAC, so a link made
//!   in any language checks out as long as the URL sent is the one signed.
//! - `signature` is the last parameter and appears once; `key_id` (the API key's id) and
//!   `expires` (Unix seconds, decimal digits) each appear once, in the signed part.
//! - The three are taken out of the options before they are read (the option parser refuses
//!   names it does not know). Signatures are read only from `GET` queries: in a `POST` body
//!   they are unknown options (400).
//!
//! Every refusal of a link is 403, decided before the rate limit, the options and any credit
//! hold, so it costs nothing: `signature_expired` for a link that checks out but whose time has
//! passed, `invalid_signature` for everything else (a malformed or misplaced part, an unknown or
//! revoked key, a key without a secret, a wrong secret, a changed parameter) with one message,
//! which does not say which. A query with any of the three parameters and an API key header
//! (`x-api-key`, `Authorization`) is 400 `ambiguous_credentials`; a session cookie is ignored
//! (a browser sends it with an `<img>` on its own origin). A link that checks out is the key's
//! request: charged to its account and counted against its rate limit like the key itself.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use warp::http::{header, HeaderMap, StatusCode};
use warp::reply::Response;

use super::auth::{authenticate, Allow};
use super::errors::ApiError;
use super::options;
use super::ApiState;
use crate::accounts::Principal;

/// The query parameters of a signed link, never capture options.
pub const PARAMS: [&str; 3] = ["key_id", "expires", "signature"];

/// What precedes the signature in the raw query.
const SIGNATURE_TAIL: &str = "&signature=";

/// The balance and its prompts: an account's own business, not for whoever holds a link.
const ACCOUNT_HEADERS: [&str; 3] = [
    "x-credits-remaining",
    "x-credits-low",
    "x-credits-suggested-pack",
];

/// A signed link's parts, well formed (not yet checked against its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLink {
    key_id: String,
    expires: u64,
    /// The raw query up to `&signature=`: what the HMAC covers.
    signed: String,
    signature: [u8; 32],
}

/// A GET query's capture options, and — when it names any of [`PARAMS`] — its signed link, or
/// why it is not one.
pub type Link = Option<Result<SignedLink, ApiError>>;

/// Reads a GET query: the options without the link's parameters, and the link.
pub fn read(query: &str) -> (Map<String, Value>, Link) {
    let mut map = options::query_to_map(query);
    let mut named = false;
    for name in PARAMS {
        named |= map.remove(name).is_some();
    }
    let link = named.then(|| parse(query));
    (map, link)
}

fn invalid(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "invalid_signature",
        format!("this signed link is not valid: {why}; nothing was charged"),
    )
}

/// The one refusal of a well-formed link that does not check out, whatever the reason.
fn does_not_check_out() -> ApiError {
    invalid("its signature does not match its key_id and parameters (the key or its signing secret may have been revoked or rotated)")
}

/// The parts of a link, checked for form only.
fn parse(query: &str) -> Result<SignedLink, ApiError> {
    let Some(at) = query.rfind(SIGNATURE_TAIL) else {
        return Err(invalid(
            "`signature` must be its last parameter, after `key_id` and `expires`",
        ));
    };
    let (signed, hex_digits) = (&query[..at], &query[at + SIGNATURE_TAIL.len()..]);
    let lower_hex = hex_digits.len() == 64
        && hex_digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut signature = [0u8; 32];
    if !lower_hex || hex::decode_to_slice(hex_digits, &mut signature).is_err() {
        return Err(invalid(
            "`signature` must be 64 lower-case hex digits and the last parameter",
        ));
    }
    let (mut key_id, mut expires) = (None, None);
    for (name, value) in form_urlencoded::parse(signed.as_bytes()) {
        let slot = match name.as_ref() {
            "key_id" => &mut key_id,
            "expires" => &mut expires,
            "signature" => return Err(invalid("`signature` must appear once, last")),
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(invalid(&format!("`{name}` must appear once")));
        }
    }
    let Some(key_id) = key_id.filter(|k| !k.is_empty()) else {
        return Err(invalid("`key_id` is missing before `signature`"));
    };
    let expires = expires
        .filter(|e| !e.is_empty() && e.len() <= 20 && e.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|e| e.parse::<u64>().ok())
        .ok_or_else(|| invalid("`expires` must be Unix seconds, before `signature`"))?;
    Ok(SignedLink {
        key_id,
        expires,
        signed: signed.to_string(),
        signature,
    })
}

/// Whether `signature` is the HMAC-SHA256 of `signed` keyed by `secret` (constant time).
fn checks_out(secret: &str, signed: &str, signature: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(signed.as_bytes());
    mac.verify_slice(signature).is_ok()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who is calling a capture: the signed link's key when the query carries one, else the
/// credentials of [`authenticate`].
pub async fn caller(
    state: &ApiState,
    headers: &HeaderMap,
    link: Link,
) -> Result<Principal, ApiError> {
    let Some(link) = link else {
        return authenticate(state, headers, Allow::KeyOrSession).await;
    };
    if headers.contains_key("x-api-key") || headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ambiguous_credentials",
            "send either a signed link (key_id, expires, signature) or an API key header, not both",
        ));
    }
    let link = link?;
    let Some(stored) = state.accounts.signing_secret(&link.key_id).await? else {
        return Err(does_not_check_out());
    };
    if !checks_out(&stored.secret, &link.signed, &link.signature) {
        return Err(does_not_check_out());
    }
    if now_secs() >= link.expires {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "signature_expired",
            "this signed link has expired (its `expires` has passed); nothing was charged",
        ));
    }
    Ok(Principal {
        account: stored.account,
        key_id: Some(link.key_id),
    })
}

/// A signed link's response without the account's balance headers: whoever holds a link sees
/// the image, not the account.
pub fn public(mut response: Response) -> Response {
    for name in ACCOUNT_HEADERS {
        response.headers_mut().remove(name);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "lsk_test-secret";

    fn sign(secret: &str, signed: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(signed.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn link(signed: &str) -> String {
        format!("{signed}&signature={}", sign(SECRET, signed))
    }

    fn refused(query: &str) -> ApiError {
        match read(query).1 {
            Some(Err(e)) => e,
            other => panic!("{query}: not refused: {other:?}"),
        }
    }

    #[test]
    fn the_signature_covers_the_raw_query_before_it() {
        // RFC 4231 test case 2: the HMAC itself is the standard one.
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let signed = "url=https%3A%2F%2Fexample.com%2F&width=400&key_id=key_1&expires=4102444800";
        let (options, parsed) = read(&link(signed));
        let parsed = parsed.expect("a link").expect("well formed");
        assert_eq!(parsed.key_id, "key_1");
        assert_eq!(parsed.expires, 4_102_444_800);
        assert_eq!(parsed.signed, signed);
        assert!(checks_out(SECRET, &parsed.signed, &parsed.signature));
        assert!(!checks_out("lsk_other", &parsed.signed, &parsed.signature));
        // The options are the query's, without the link's own parameters.
        let names: Vec<&str> = options.keys().map(String::as_str).collect();
        assert_eq!(names, ["url", "width"]);
        assert_eq!(options["url"], "https://example.com/");
    }

    #[test]
    fn any_change_to_the_signed_part_breaks_the_signature() {
        let signed = "url=https%3A%2F%2Fexample.com%2F&width=400&key_id=key_1&expires=4102444800";
        let signature = sign(SECRET, signed);
        for changed in [
            "url=https%3A%2F%2Fexample.com%2F&width=401&key_id=key_1&expires=4102444800",
            "url=https://example.com/&width=400&key_id=key_1&expires=4102444800",
            "width=400&url=https%3A%2F%2Fexample.com%2F&key_id=key_1&expires=4102444800",
            "url=https%3A%2F%2Fexample.com%2F&width=400&key_id=key_1&expires=4102444801",
            "url=https%3A%2F%2Fexample.com%2F&width=400&full_page=true&key_id=key_1&expires=4102444800",
        ] {
            let query = format!("{changed}&signature={signature}");
            let parsed = read(&query).1.expect("a link").expect("well formed");
            assert!(
                !checks_out(SECRET, &parsed.signed, &parsed.signature),
                "{changed} still checks out"
            );
        }
    }

    #[test]
    fn malformed_links_are_refused_before_any_lookup() {
        let good = "url=x&key_id=key_1&expires=4102444800";
        let sig = sign(SECRET, good);
        for query in [
            // Stripped: the key and time without a signature.
            good.to_string(),
            "url=x&key_id=key_1".to_string(),
            // Not last, or twice.
            format!("url=x&signature={sig}&key_id=key_1&expires=4102444800"),
            format!("{good}&signature={sig}&width=400"),
            format!("{good}&signature={sig}&signature={sig}"),
            format!("url=x&%73ignature={sig}&key_id=key_1&expires=4102444800&signature={sig}"),
            format!("signature={sig}"),
            // Not 64 lower-case hex digits.
            format!("{good}&signature={}", sig.to_uppercase()),
            format!("{good}&signature={}", &sig[..62]),
            format!("{good}&signature={sig}00"),
            format!("{good}&signature={}g", &sig[..63]),
            format!("{good}&signature="),
            // Missing, repeated or malformed key_id / expires.
            format!("url=x&expires=4102444800&signature={sig}"),
            format!("url=x&key_id=&expires=4102444800&signature={sig}"),
            format!("url=x&key_id=key_1&signature={sig}"),
            format!("url=x&key_id=key_1&expires=-1&signature={sig}"),
            format!("url=x&key_id=key_1&expires=1e9&signature={sig}"),
            format!("url=x&key_id=key_1&expires=99999999999999999999999&signature={sig}"),
            format!("url=x&key_id=key_1&key_id=key_2&expires=4102444800&signature={sig}"),
            format!("url=x&key_id=key_1&expires=1&expires=4102444800&signature={sig}"),
        ] {
            let e = refused(&query);
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{query}");
            assert_eq!(e.code, "invalid_signature", "{query}");
        }
    }

    #[test]
    fn a_query_without_link_parameters_is_not_a_link() {
        let (options, link) = read("url=https%3A%2F%2Fexample.com%2F&signatures=1");
        assert!(link.is_none());
        assert_eq!(options.len(), 2);
        let (options, link) = read("");
        assert!(link.is_none() && options.is_empty());
    }

    #[test]
    fn a_public_response_carries_no_balance() {
        let mut response = Response::new(Default::default());
        for name in ACCOUNT_HEADERS.iter().chain(&["x-ratelimit-limit"]) {
            response
                .headers_mut()
                .insert(*name, warp::http::HeaderValue::from_static("1"));
        }
        let response = public(response);
        for name in ACCOUNT_HEADERS {
            assert!(!response.headers().contains_key(name), "{name}");
        }
        assert!(response.headers().contains_key("x-ratelimit-limit"));
    }
}
