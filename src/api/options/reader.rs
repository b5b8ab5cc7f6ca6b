//! Reading options leniently, one field at a time: query parameters as a JSON object, and typed
//! readers that accept native JSON values and their string forms, recording one error per bad
//! field.

use serde_json::{Map, Value};

use crate::api::errors::FieldError;

/// Longest CSS selector, in characters.
pub(super) const MAX_SELECTOR: usize = 1024;
/// Most entries of a list option.
pub(super) const MAX_LIST: usize = 50;

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

/// Takes fields out of the option map, recording one error per bad field.
pub(super) struct Reader {
    pub(super) map: Map<String, Value>,
    pub(super) errors: Vec<FieldError>,
}

impl Reader {
    pub(super) fn error(&mut self, field: &str, message: &str) {
        self.errors.push(FieldError {
            field: field.to_string(),
            message: message.to_string(),
        });
    }

    pub(super) fn has_error(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    pub(super) fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|m| self.error(field, &m)).ok()
    }

    /// A present value, with `null` treated as absent. Repeated scalar query parameters are an error.
    pub(super) fn take(&mut self, field: &str) -> Option<Value> {
        match self.map.remove(field) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub(super) fn string(&mut self, field: &str) -> Option<String> {
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

    pub(super) fn bool(&mut self, field: &str) -> Option<bool> {
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

    pub(super) fn uint(&mut self, field: &str, min: u64, max: u64) -> Option<u64> {
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

    pub(super) fn float(&mut self, field: &str, min: f64, max: f64) -> Option<f64> {
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

    pub(super) fn selector(&mut self, field: &str) -> Option<String> {
        let s = self.string(field)?;
        if s.trim().is_empty() || s.len() > MAX_SELECTOR {
            self.error(field, "must be a CSS selector of 1 to 1024 characters");
            return None;
        }
        Some(s)
    }

    pub(super) fn script(&mut self, field: &str, max: usize) -> Option<String> {
        let s = self.string(field)?;
        if s.len() > max {
            self.error(field, &format!("must be at most {max} bytes"));
            return None;
        }
        Some(s)
    }

    /// An array of strings, or one string (a single query parameter).
    pub(super) fn string_list(&mut self, field: &str) -> Vec<String> {
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
}
