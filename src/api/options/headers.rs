//! The `headers` option: extra request headers, as a JSON object or `Name: value` strings; names
//! that are tokens, values without control characters, none that would break Chromium's request.

use serde_json::Value;

use super::reader::{Access, Reader};
use super::spec::MAX_LIST;

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

impl Reader<'_> {
    /// `{"Name": "value"}`, or `Name: value` strings (repeated query parameters).
    pub(super) fn headers(&mut self, field: &'static str) -> Vec<(String, String)> {
        self.note(field, Access::Headers);
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
}
