//! Capture options as the API receives them (a JSON body, or query parameters with the same
//! names) and their validation into a [`CaptureSpec`]. Every field is checked and every problem
//! reported, each naming its field; unknown fields are errors too.

use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use super::errors::FieldError;
use crate::config::CaptureConfig;
use crate::farm::job::{CookieSpec, ImageFormat, WaitUntil};
use crate::farm::CaptureSpec;

/// How the image is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    Binary,
    Json,
}

/// A validated request.
#[derive(Debug)]
pub struct CaptureRequest {
    pub spec: CaptureSpec,
    pub timeout: Duration,
    pub response_type: ResponseType,
}

const MAX_SELECTOR: usize = 1024;
const MAX_LIST: usize = 50;
const MAX_URL: usize = 4096;
const MAX_HEADER_VALUE: usize = 4096;
/// Headers a capture may not set: they would break the request Chromium makes.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// Query parameters as a JSON object: repeated names become arrays, values stay strings
/// (the readers below accept both native JSON values and their string forms).
pub fn query_to_map(query: &str) -> Map<String, Value> {
    let mut map = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let key = key.into_owned();
        let value = Value::String(value.into_owned());
        match map.get_mut(&key) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                map.insert(key, value);
            }
        }
    }
    map
}

/// Validates options against the configured caps.
pub fn parse(
    map: Map<String, Value>,
    caps: &CaptureConfig,
) -> Result<CaptureRequest, Vec<FieldError>> {
    let mut r = Reader {
        map,
        errors: Vec::new(),
    };

    let url = r
        .string("url")
        .and_then(|raw| r.check("url", parse_url(&raw)));
    if url.is_none() && !r.has_error("url") {
        r.error("url", "is required");
    }
    let format = match r
        .string("format")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("png") => ImageFormat::Png,
        Some("jpeg") | Some("jpg") => ImageFormat::Jpeg,
        Some("webp") => ImageFormat::Webp,
        Some(_) => {
            r.error("format", "must be one of png, jpeg, webp");
            ImageFormat::Png
        }
    };
    let quality = r.uint("quality", 1, 100).map(|q| q as u8);
    if quality.is_some() && format == ImageFormat::Png {
        r.error("quality", "applies to jpeg and webp only");
    }
    let width = r
        .uint("width", 1, u64::from(caps.max_width))
        .map_or(caps.default_width, |v| v as u32);
    let height = r
        .uint("height", 1, u64::from(caps.max_height))
        .map_or(caps.default_height, |v| v as u32);
    let device_scale_factor = r.float("device_scale_factor", 1.0, 3.0).unwrap_or(1.0);
    let full_page = r.bool("full_page").unwrap_or(false);
    let selector = r.selector("selector");
    if full_page && selector.is_some() {
        r.error("selector", "cannot be combined with full_page");
    }
    let wait_until = match r
        .string("wait_until")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("load") => WaitUntil::Load,
        Some("domcontentloaded") => WaitUntil::DomContentLoaded,
        Some("networkidle") => WaitUntil::NetworkIdle,
        Some(_) => {
            r.error(
                "wait_until",
                "must be one of load, domcontentloaded, networkidle",
            );
            WaitUntil::Load
        }
    };
    let wait_for_selector = r.selector("wait_for_selector");
    let delay = r.uint("delay", 0, caps.max_delay_ms).unwrap_or(0);
    let timeout = r
        .uint("timeout", 100, caps.max_timeout_ms)
        .unwrap_or(caps.default_timeout_ms);
    if delay >= timeout && !r.has_error("delay") && !r.has_error("timeout") {
        r.error("delay", "must be shorter than timeout");
    }
    let dark_mode = r.bool("dark_mode").unwrap_or(false);
    let hide_selectors = r.string_list("hide_selectors");
    for s in &hide_selectors {
        if s.is_empty() || s.len() > MAX_SELECTOR || s.contains(['{', '}']) {
            r.error(
                "hide_selectors",
                "each entry must be a CSS selector of 1 to 1024 characters without braces",
            );
            break;
        }
    }
    let css = r.script("css", caps.max_script_bytes);
    let js = r.script("js", caps.max_script_bytes);
    let user_agent = r.string("user_agent");
    if let Some(ua) = &user_agent {
        if ua.is_empty() || ua.len() > 512 || ua.chars().any(char::is_control) {
            r.error("user_agent", "must be 1 to 512 printable characters");
        }
    }
    let headers = r.headers("headers");
    let cookies = r.cookies("cookies");
    let omit_background = r.bool("omit_background").unwrap_or(false);
    if omit_background && format == ImageFormat::Jpeg {
        r.error(
            "omit_background",
            "needs a format with transparency (png or webp)",
        );
    }
    let scroll_to_load = r.bool("scroll_to_load").unwrap_or(false);
    let response_type = match r
        .string("response_type")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("binary") => ResponseType::Binary,
        Some("json") => ResponseType::Json,
        Some(_) => {
            r.error("response_type", "must be binary or json");
            ResponseType::Binary
        }
    };
    let unknown: Vec<String> = r.map.keys().cloned().collect();
    for key in unknown {
        r.error(&key, "is not a known option");
    }

    match (url, r.errors.is_empty()) {
        (Some(url), true) => Ok(CaptureRequest {
            spec: CaptureSpec {
                url,
                format,
                quality,
                width,
                height,
                device_scale_factor,
                full_page,
                max_full_page_height: caps.max_full_page_height,
                max_output_bytes: caps.max_output_bytes,
                selector,
                wait_until,
                wait_for_selector,
                delay: Duration::from_millis(delay),
                dark_mode,
                hide_selectors,
                css,
                js,
                user_agent,
                headers,
                cookies,
                omit_background,
                scroll_to_load,
            },
            timeout: Duration::from_millis(timeout),
            response_type,
        }),
        _ => Err(r.errors),
    }
}

fn parse_url(raw: &str) -> Result<Url, String> {
    if raw.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".into());
    }
    Ok(url)
}

/// Takes fields out of the option map, recording one error per bad field.
struct Reader {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Reader {
    fn error(&mut self, field: &str, message: &str) {
        self.errors.push(FieldError {
            field: field.to_string(),
            message: message.to_string(),
        });
    }

    fn has_error(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|m| self.error(field, &m)).ok()
    }

    /// A present value, with `null` treated as absent. Repeated scalar query parameters are an error.
    fn take(&mut self, field: &str) -> Option<Value> {
        match self.map.remove(field) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn string(&mut self, field: &str) -> Option<String> {
        match self.take(field)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(_) => {
                self.error(field, "must be given once");
                None
            }
            _ => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    fn bool(&mut self, field: &str) -> Option<bool> {
        let value = self.take(field)?;
        let parsed = match &value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" | "" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            Value::Number(n) => match n.as_u64() {
                Some(1) => Some(true),
                Some(0) => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.error(field, "must be true or false");
        }
        parsed
    }

    fn uint(&mut self, field: &str, min: u64, max: u64) -> Option<u64> {
        let value = self.take(field)?;
        let parsed = match &value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.error(field, &format!("must be an integer from {min} to {max}"));
                None
            }
        }
    }

    fn float(&mut self, field: &str, min: f64, max: f64) -> Option<f64> {
        let value = self.take(field)?;
        let parsed = match &value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(v) if v.is_finite() && (min..=max).contains(&v) => Some(v),
            _ => {
                self.error(field, &format!("must be a number from {min} to {max}"));
                None
            }
        }
    }

    fn selector(&mut self, field: &str) -> Option<String> {
        let s = self.string(field)?;
        if s.trim().is_empty() || s.len() > MAX_SELECTOR {
            self.error(field, "must be a CSS selector of 1 to 1024 characters");
            return None;
        }
        Some(s)
    }

    fn script(&mut self, field: &str, max: usize) -> Option<String> {
        let s = self.string(field)?;
        if s.len() > max {
            self.error(field, &format!("must be at most {max} bytes"));
            return None;
        }
        Some(s)
    }

    /// An array of strings, or one string (a single query parameter).
    fn string_list(&mut self, field: &str) -> Vec<String> {
        let Some(value) = self.take(field) else {
            return Vec::new();
        };
        let items = match value {
            Value::String(s) => vec![s],
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s),
                        _ => {
                            self.error(field, "must be a list of strings");
                            return Vec::new();
                        }
                    }
                }
                out
            }
            _ => {
                self.error(field, "must be a list of strings");
                return Vec::new();
            }
        };
        if items.len() > MAX_LIST {
            self.error(field, &format!("must have at most {MAX_LIST} entries"));
            return Vec::new();
        }
        items
    }

    /// `{"Name": "value"}`, or `Name: value` strings (repeated query parameters).
    fn headers(&mut self, field: &str) -> Vec<(String, String)> {
        let pairs: Vec<(String, String)> = match self.take(field) {
            None => return Vec::new(),
            Some(Value::Object(map)) => {
                let mut out = Vec::new();
                for (k, v) in map {
                    match v {
                        Value::String(v) => out.push((k, v)),
                        _ => {
                            self.error(field, "header values must be strings");
                            return Vec::new();
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.map.insert(field.to_string(), other);
                let mut out = Vec::new();
                for line in self.string_list(field) {
                    match line.split_once(':') {
                        Some((k, v)) => out.push((k.trim().to_string(), v.trim().to_string())),
                        None => {
                            self.error(field, "each header must be written `Name: value`");
                            return Vec::new();
                        }
                    }
                }
                out
            }
        };
        if pairs.len() > MAX_LIST {
            self.error(field, &format!("must have at most {MAX_LIST} entries"));
            return Vec::new();
        }
        for (name, value) in &pairs {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                self.error(field, &format!("`{name}` is not a valid header name"));
                return Vec::new();
            }
            if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.error(field, &format!("`{name}` cannot be set"));
                return Vec::new();
            }
            if value.len() > MAX_HEADER_VALUE || value.chars().any(|c| c.is_control() && c != '\t')
            {
                self.error(
                    field,
                    &format!("the value of `{name}` is not a valid header value"),
                );
                return Vec::new();
            }
        }
        pairs
    }

    /// `[{"name", "value", "domain"?, "path"?, "secure"?, "httpOnly"?}]`, or `name=value` strings.
    fn cookies(&mut self, field: &str) -> Vec<CookieSpec> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caps() -> CaptureConfig {
        CaptureConfig::default()
    }

    fn parse_json(v: Value) -> Result<CaptureRequest, Vec<FieldError>> {
        match v {
            Value::Object(map) => parse(map, &caps()),
            _ => panic!("test input must be an object"),
        }
    }

    fn fields(result: Result<CaptureRequest, Vec<FieldError>>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn minimal_request_gets_defaults() {
        let req = parse_json(json!({"url": "https://example.com/"})).expect("valid");
        assert_eq!(req.spec.format, ImageFormat::Png);
        assert_eq!((req.spec.width, req.spec.height), (1280, 800));
        assert_eq!(req.timeout, Duration::from_millis(30_000));
        assert_eq!(req.response_type, ResponseType::Binary);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({}), "url"),
            (json!({"url": "ftp://example.com"}), "url"),
            (json!({"url": "file:///etc/passwd"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"url": "https://e.com", "format": "gif"}), "format"),
            (
                json!({"url": "https://e.com", "format": "jpeg", "quality": 0}),
                "quality",
            ),
            (json!({"url": "https://e.com", "quality": 50}), "quality"),
            (json!({"url": "https://e.com", "width": 0}), "width"),
            (json!({"url": "https://e.com", "height": 99999}), "height"),
            (
                json!({"url": "https://e.com", "device_scale_factor": 4}),
                "device_scale_factor",
            ),
            (
                json!({"url": "https://e.com", "device_scale_factor": "NaN"}),
                "device_scale_factor",
            ),
            (
                json!({"url": "https://e.com", "full_page": "maybe"}),
                "full_page",
            ),
            (
                json!({"url": "https://e.com", "full_page": true, "selector": "h1"}),
                "selector",
            ),
            (
                json!({"url": "https://e.com", "wait_until": "never"}),
                "wait_until",
            ),
            (json!({"url": "https://e.com", "delay": 999999}), "delay"),
            (json!({"url": "https://e.com", "timeout": 5}), "timeout"),
            (
                json!({"url": "https://e.com", "timeout": 1000, "delay": 2000}),
                "delay",
            ),
            (
                json!({"url": "https://e.com", "hide_selectors": [1]}),
                "hide_selectors",
            ),
            (
                json!({"url": "https://e.com", "css": "x".repeat(70_000)}),
                "css",
            ),
            (
                json!({"url": "https://e.com", "headers": {"Host": "a"}}),
                "headers",
            ),
            (
                json!({"url": "https://e.com", "headers": {"X-A": "a\r\nb"}}),
                "headers",
            ),
            (
                json!({"url": "https://e.com", "cookies": ["novalue"]}),
                "cookies",
            ),
            (
                json!({"url": "https://e.com", "response_type": "xml"}),
                "response_type",
            ),
            (
                json!({"url": "https://e.com", "format": "jpeg", "omit_background": true}),
                "omit_background",
            ),
            (json!({"url": "https://e.com", "colour": "red"}), "colour"),
        ];
        for (input, field) in cases {
            let got = fields(parse_json(input.clone()));
            assert_eq!(got, vec![field.to_string()], "input {input}");
        }
    }

    #[test]
    fn all_errors_are_reported_together() {
        let got = fields(parse_json(
            json!({"url": "x", "width": -1, "format": "bmp"}),
        ));
        assert_eq!(got, vec!["url", "format", "width"]);
    }

    #[test]
    fn query_strings_use_the_same_names_and_string_forms() {
        let map = query_to_map(
            "url=https%3A%2F%2Fexample.com%2F&format=jpeg&quality=70&width=800&height=600\
             &device_scale_factor=2&full_page=true&dark_mode=1&hide_selectors=.a&hide_selectors=%23b\
             &headers=X-Test%3A%20yes&cookies=session%3Dabc&response_type=json&wait_until=networkidle",
        );
        let req = parse(map, &caps()).expect("valid");
        let spec = req.spec;
        assert_eq!(spec.format, ImageFormat::Jpeg);
        assert_eq!(spec.quality, Some(70));
        assert_eq!((spec.width, spec.height), (800, 600));
        assert!((spec.device_scale_factor - 2.0).abs() < f64::EPSILON);
        assert!(spec.full_page && spec.dark_mode);
        assert_eq!(spec.hide_selectors, vec![".a", "#b"]);
        assert_eq!(
            spec.headers,
            vec![("X-Test".to_string(), "yes".to_string())]
        );
        assert_eq!(spec.cookies[0].name, "session");
        assert_eq!(spec.cookies[0].value, "abc");
        assert_eq!(spec.wait_until, WaitUntil::NetworkIdle);
        assert_eq!(req.response_type, ResponseType::Json);
    }

    #[test]
    fn repeated_scalar_query_parameter_is_an_error() {
        let map = query_to_map("url=https://a.com&width=1&width=2");
        assert_eq!(fields(parse(map, &caps())), vec!["width"]);
    }

    #[test]
    fn cookie_objects_are_accepted() {
        let req = parse_json(json!({"url": "https://e.com", "cookies": [
            {"name": "a", "value": "1", "domain": "e.com", "httpOnly": true}
        ]}))
        .expect("valid");
        assert_eq!(req.spec.cookies[0].domain.as_deref(), Some("e.com"));
        assert_eq!(req.spec.cookies[0].http_only, Some(true));
    }
}
