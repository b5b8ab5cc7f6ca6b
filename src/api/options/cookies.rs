//! The `cookies` option: `name=value` strings or cookie objects, checked to be what Chromium
//! accepts.

use serde_json::{Map, Value};

use super::reader::{Access, Reader};
use super::spec::MAX_LIST;
use crate::farm::job::CookieSpec;

impl Reader<'_> {
    /// `[{"name", "value", "domain"?, "path"?, "secure"?, "httpOnly"?}]`, or `name=value` strings.
    pub(super) fn cookies(&mut self, field: &'static str) -> Vec<CookieSpec> {
        self.note(field, Access::Cookies);
        let items = match self.take(field) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => vec![other],
        };
        if items.len() > MAX_LIST {
            self.error(field, &format!("must have at most {MAX_LIST} entries"));
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let cookie = match item {
                Value::String(s) => s.split_once('=').map(|(n, v)| CookieSpec {
                    name: n.trim().to_string(),
                    value: v.trim().to_string(),
                    domain: None,
                    path: None,
                    secure: None,
                    http_only: None,
                }),
                Value::Object(map) => cookie_from_object(&map),
                _ => None,
            };
            match cookie {
                Some(c) if cookie_ok(&c) => out.push(c),
                _ => {
                    self.error(
                        field,
                        "each cookie must be `name=value` or an object with string `name` and `value`",
                    );
                    return Vec::new();
                }
            }
        }
        out
    }
}

/// Most bytes of a cookie's name and value together (Chromium's limit).
const MAX_COOKIE_BYTES: usize = 4096;

/// A cookie Chromium will accept: a token name, a value without `;`, at most 4096 bytes of both
/// together, a host-like domain and an absolute path, all printable and bounded, and the rules
/// of the `__Secure-` and `__Host-` name prefixes. (Chromium refuses the whole `setCookies`
/// for one cookie it will not take, which would fail the capture on every browser.)
fn cookie_ok(c: &CookieSpec) -> bool {
    let printable = |s: &str| !s.chars().any(char::is_control);
    let name_ok = !c.name.is_empty()
        && c.name.len() <= 256
        && !c.name.contains([';', '=', ' ', ','])
        && printable(&c.name);
    let value_ok = !c.value.contains(';') && printable(&c.value);
    let size_ok = c.name.len() + c.value.len() <= MAX_COOKIE_BYTES;
    let domain_ok = c.domain.as_deref().is_none_or(domain_ok);
    let path_ok = c
        .path
        .as_deref()
        .is_none_or(|p| p.starts_with('/') && p.len() <= 1024 && !p.contains(';') && printable(p));
    name_ok && value_ok && size_ok && domain_ok && path_ok && prefix_ok(c)
}

/// A cookie domain Chromium takes: a host name, optionally after one dot, or (without the dot)
/// an IPv4 address; labels of letters, digits and hyphens, none empty.
fn domain_ok(domain: &str) -> bool {
    let (dotted, host) = match domain.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, domain),
    };
    let shaped = !host.is_empty()
        && domain.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !host.split('.').any(str::is_empty);
    shaped
        && match url::Host::parse(host) {
            Ok(url::Host::Domain(_)) => true,
            Ok(url::Host::Ipv4(_)) => !dotted,
            _ => false,
        }
}

/// `__Secure-…` needs `secure`; `__Host-…` also no domain and the path `/` (compared without
/// regard to case, as Chromium does).
fn prefix_ok(c: &CookieSpec) -> bool {
    let name = c.name.to_ascii_lowercase();
    let secure = c.secure == Some(true);
    if name.starts_with("__host-") {
        secure && c.domain.is_none() && c.path.as_deref().is_none_or(|p| p == "/")
    } else if name.starts_with("__secure-") {
        secure
    } else {
        true
    }
}

fn cookie_from_object(map: &Map<String, Value>) -> Option<CookieSpec> {
    let known = [
        "name",
        "value",
        "domain",
        "path",
        "secure",
        "httpOnly",
        "http_only",
    ];
    if map.keys().any(|k| !known.contains(&k.as_str())) {
        return None;
    }
    let text = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
    let flag = |k: &str| map.get(k).and_then(Value::as_bool);
    Some(CookieSpec {
        name: text("name")?,
        value: text("value")?,
        domain: text("domain"),
        path: text("path"),
        secure: flag("secure"),
        http_only: flag("httpOnly").or_else(|| flag("http_only")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(name: &str, value: &str, domain: Option<&str>, secure: bool) -> CookieSpec {
        CookieSpec {
            name: name.into(),
            value: value.into(),
            domain: domain.map(str::to_string),
            path: None,
            secure: Some(secure),
            http_only: None,
        }
    }

    /// Each of these made Chromium refuse `Network.setCookies` ("Invalid cookie fields"), so
    /// every capture with one failed twice with 503 `browser_error` (found by schemathesis).
    #[test]
    fn cookies_chromium_refuses_are_refused() {
        for domain in [".", "..", "...", "..a", ".1", "a.1", ".a.1", ".0x1", "a..b"] {
            assert!(
                !cookie_ok(&cookie("a", "b", Some(domain), false)),
                "domain {domain:?}"
            );
        }
        for name in ["__Secure-x", "__Host-x", "__host-x"] {
            assert!(!cookie_ok(&cookie(name, "b", None, false)), "{name}");
        }
        assert!(!cookie_ok(&cookie(
            "__Host-x",
            "b",
            Some("example.com"),
            true
        )));
        assert!(!cookie_ok(&cookie("a", &"x".repeat(4096), None, false)));
        assert!(!cookie_ok(&cookie(
            &"n".repeat(256),
            &"x".repeat(3841),
            None,
            false
        )));
    }

    #[test]
    fn cookies_chromium_takes_are_kept() {
        for domain in [
            "example.com",
            ".example.com",
            "a",
            ".a",
            "-",
            "1.2.3.4",
            "localhost",
        ] {
            assert!(
                cookie_ok(&cookie("a", "b", Some(domain), false)),
                "domain {domain:?}"
            );
        }
        assert!(cookie_ok(&cookie("__Secure-x", "b", None, true)));
        assert!(cookie_ok(&cookie("__Host-x", "b", None, true)));
        assert!(cookie_ok(&cookie("a", &"x".repeat(4095), None, false)));
        assert!(cookie_ok(&cookie("a", "", None, false)));
    }
}
