//! Reading options leniently, one field at a time: query parameters as a JSON object, and typed
//! readers that accept native JSON values and their string forms, recording one error per bad
//! field.

use serde_json::{Map, Value};

use super::spec::{self, Kind, MAX_LIST, MAX_SELECTOR};
use crate::api::errors::FieldError;
use crate::config::CaptureConfig;

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

/// How a field was read: the JSON type its reader takes (checked against `spec` by its tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    Text,
    Bool,
    Integer,
    Number,
    List,
    Headers,
    Cookies,
}

/// Takes fields out of the option map, recording one error per bad field. Numbers' bounds and
/// scripts' size caps come from the options' description (`spec`), under the operator's caps.
pub(super) struct Reader<'c> {
    pub(super) map: Map<String, Value>,
    pub(super) errors: Vec<FieldError>,
    caps: &'c CaptureConfig,
    /// Every field read, with the first reader that read it, in order.
    pub(super) read: Vec<(&'static str, Access)>,
}

impl<'c> Reader<'c> {
    pub(super) fn new(map: Map<String, Value>, caps: &'c CaptureConfig) -> Self {
        Reader {
            map,
            errors: Vec::new(),
            caps,
            read: Vec::new(),
        }
    }

    /// Records that `field` was read as `access` (the first reader of a field wins).
    pub(super) fn note(&mut self, field: &'static str, access: Access) {
        if !self.read.iter().any(|(f, _)| *f == field) {
            self.read.push((field, access));
        }
    }

    /// The documented bounds of a number option. An option missing from `spec` has none: it is
    /// not taken, so it is refused as unknown (and `spec`'s tests name it).
    fn bounds(&self, field: &str) -> Option<(f64, f64)> {
        match spec::find(field)?.kind {
            Kind::Integer { min, max } | Kind::Number { min, max } => {
                Some((min.of(self.caps), max.of(self.caps)))
            }
            _ => None,
        }
    }

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
    pub(super) fn take(&mut self, field: &'static str) -> Option<Value> {
        match self.map.remove(field) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub(super) fn string(&mut self, field: &'static str) -> Option<String> {
        self.note(field, Access::Text);
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

    pub(super) fn bool(&mut self, field: &'static str) -> Option<bool> {
        self.note(field, Access::Bool);
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

    /// A whole number within the documented bounds.
    pub(super) fn uint(&mut self, field: &'static str) -> Option<u64> {
        self.note(field, Access::Integer);
        let (min, max) = self.bounds(field)?;
        let (min, max) = (min as u64, max as u64);
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

    /// A number within the documented bounds.
    pub(super) fn float(&mut self, field: &'static str) -> Option<f64> {
        self.note(field, Access::Number);
        let (min, max) = self.bounds(field)?;
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

    pub(super) fn selector(&mut self, field: &'static str) -> Option<String> {
        let s = self.string(field)?;
        if s.trim().is_empty() || s.len() > MAX_SELECTOR {
            self.error(field, "must be a CSS selector of 1 to 1024 characters");
            return None;
        }
        Some(s)
    }

    /// A script or stylesheet of at most the documented size.
    pub(super) fn script(&mut self, field: &'static str) -> Option<String> {
        self.note(field, Access::Text);
        let max = match spec::find(field)?.kind {
            Kind::Text { max_len, .. } => max_len.of(self.caps) as usize,
            _ => return None,
        };
        let s = self.string(field)?;
        if s.len() > max {
            self.error(field, &format!("must be at most {max} bytes"));
            return None;
        }
        Some(s)
    }

    /// An array of strings, or one string (a single query parameter).
    pub(super) fn string_list(&mut self, field: &'static str) -> Vec<String> {
        self.note(field, Access::List);
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
