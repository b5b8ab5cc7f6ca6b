//! The key of a cache entry: the account, plus every option that changes what is rendered,
//! hashed. Two spellings of one request (`width=800` or `{"width": 800}`, any option order,
//! `jpg` or `jpeg`) are validated into the same [`CaptureSpec`], so they share an entry.

use sha2::{Digest, Sha256};

use crate::config::Engine;
use crate::farm::CaptureSpec;

/// A cache entry's name: 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of `spec` captured for `account`. `extra` is the request's `cache_key` (a
    /// customer's own version tag: another value, another entry).
    ///
    /// The whole validated spec goes in through its `Debug` form, so an option added to
    /// [`CaptureSpec`] is part of the key without anyone remembering to add it (a forgotten
    /// option would serve one capture's image for another). The daemon's version and the
    /// browser engine go in too: another renderer may draw the page otherwise, so its entries
    /// are not shared.
    pub fn new(account: &str, spec: &CaptureSpec, extra: Option<&str>, engine: Engine) -> Self {
        let mut h = Sha256::new();
        for part in [
            env!("CARGO_PKG_VERSION"),
            engine.name(),
            account,
            extra.unwrap_or(""),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(format!("{spec:?}").as_bytes());
        CacheKey(hex::encode(h.finalize()))
    }

    /// A key read back from an entry's name, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        (name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| CacheKey(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::options;
    use crate::config::CaptureConfig;
    use serde_json::{json, Map, Value};

    fn spec(v: Value) -> CaptureSpec {
        let map: Map<String, Value> = serde_json::from_value(v).expect("object");
        options::parse(map, &CaptureConfig::default())
            .expect("valid options")
            .spec
    }

    fn key(v: Value) -> CacheKey {
        CacheKey::new("acct", &spec(v), None, Engine::HeadlessShell)
    }

    #[test]
    fn two_spellings_of_one_capture_share_a_key() {
        let query = options::query_to_map(
            "width=800&url=https://a.example/&format=jpg&full_page=1&dark_mode=true",
        );
        let from_query = CacheKey::new(
            "acct",
            &options::parse(query, &CaptureConfig::default())
                .expect("valid")
                .spec,
            None,
            Engine::HeadlessShell,
        );
        let from_json = key(json!({
            "url": "https://a.example/", "format": "jpeg", "full_page": true,
            "dark_mode": true, "width": 800
        }));
        assert_eq!(from_query, from_json);
        // Options that do not change the image (the deadline) do not change the key.
        assert_eq!(
            key(json!({"url": "https://a.example/"})),
            key(json!({"url": "https://a.example/", "timeout": 9000}))
        );
    }

    #[test]
    fn anything_that_changes_the_image_changes_the_key() {
        let base = key(json!({"url": "https://a.example/"}));
        for other in [
            json!({"url": "https://a.example/other"}),
            json!({"url": "https://a.example/", "width": 801}),
            json!({"url": "https://a.example/", "format": "webp"}),
            json!({"url": "https://a.example/", "dark_mode": true}),
            json!({"url": "https://a.example/", "css": "body{color:red}"}),
            json!({"url": "https://a.example/", "headers": {"X-A": "1"}}),
            json!({"url": "https://a.example/", "block_ads": true}),
            json!({"url": "https://a.example/", "response_type": "json"}),
        ] {
            assert_ne!(key(other.clone()), base, "{other}");
        }
        let s = spec(json!({"url": "https://a.example/"}));
        let k = |account, extra, engine| CacheKey::new(account, &s, extra, engine);
        assert_ne!(
            k("acct", None, Engine::HeadlessShell),
            k("other", None, Engine::HeadlessShell)
        );
        assert_ne!(
            k("acct", None, Engine::HeadlessShell),
            k("acct", Some("v2"), Engine::HeadlessShell)
        );
        assert_ne!(
            k("acct", None, Engine::HeadlessShell),
            k("acct", None, Engine::Chromium)
        );
        // Parts are length-prefixed: moving a character between them changes the key.
        assert_ne!(
            k("acc", Some("tv"), Engine::HeadlessShell),
            k("acct", Some("v"), Engine::HeadlessShell)
        );
    }

    #[test]
    fn keys_round_trip_through_entry_names() {
        let k = key(json!({"url": "https://a.example/"}));
        assert_eq!(CacheKey::parse(k.as_str()), Some(k.clone()));
        assert_eq!(CacheKey::parse("../etc/passwd"), None);
        assert_eq!(CacheKey::parse(&k.as_str().to_uppercase()), None);
    }
}
