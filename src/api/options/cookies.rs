//! The `cookies` option: `name=value` strings or cookie objects, checked to be what Chromium
//! accepts.

use serde_json::{Map, Value};

use super::reader::{Access, Reader, MAX_LIST};
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

/// A cookie Chromium will accept: a token name, a value without `;`, a host-like domain and an
/// absolute path, all printable and bounded.
fn cookie_ok(c: &CookieSpec) -> bool {
    let printable = |s: &str| !s.chars().any(char::is_control);
    let name_ok = !c.name.is_empty()
        && c.name.len() <= 256
        && !c.name.contains([';', '=', ' ', ','])
        && printable(&c.name);
    let value_ok = c.value.len() <= 4096 && !c.value.contains(';') && printable(&c.value);
    let domain_ok = c.domain.as_deref().is_none_or(|d| {
        !d.is_empty()
            && d.len() <= 253
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    });
    let path_ok = c
        .path
        .as_deref()
        .is_none_or(|p| p.starts_with('/') && p.len() <= 1024 && !p.contains(';') && printable(p));
    name_ok && value_ok && domain_ok && path_ok
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
