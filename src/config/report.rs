//! Problems in words: `ConfigError`, and how a deserialization error, an unknown key or a value
//! from the environment is told to the operator (key paths, suggestions, variable names).

use figment::value::Value;
use figment::Figment;

use super::validate::{whole_number, BOUNDS};

/// Every problem found in a configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid configuration ({} {}):\n  - {}",
    .problems.len(),
    if .problems.len() == 1 { "problem" } else { "problems" },
    .problems.join("\n  - ")
)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// The key path of a deserialization error, cut before the first list index: a bad entry of a
/// list drops (and reports) the whole list.
pub(super) fn key_path(path: &serde_path_to_error::Path) -> Vec<String> {
    let mut keys = Vec::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Map { key } => keys.push(key.clone()),
            _ => break,
        }
    }
    keys
}

pub(super) fn find<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |v, key| match v {
        Value::Dict(_, dict) => dict.get(key),
        _ => None,
    })
}

/// Removes the key at `path`; false when there is none.
pub(super) fn remove(tree: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for key in parents {
        node = match node {
            Value::Dict(_, dict) => match dict.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        Value::Dict(_, dict) => dict.remove(last).is_some(),
        _ => false,
    }
}

/// A value as the operator wrote it: `"fast"`, `-1`, `true`, `a list`.
fn shown(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_f64().map(|f| f.to_string()))
            .unwrap_or_else(|| "a number".to_string()),
        Value::Empty(..) => "nothing".to_string(),
        Value::Dict(..) => "a table".to_string(),
        Value::Array(..) => "a list".to_string(),
    }
}

/// The environment variable that set `path`, when one did.
fn env_var(figment: &Figment, path: &str) -> Option<String> {
    let metadata = figment.find_metadata(path)?;
    metadata
        .name
        .contains("environment")
        .then(|| format!("SHOTFARM_{}", path.to_uppercase().replace('.', "__")))
}

/// `farm.browsers`, or `farm.browsers (set by SHOTFARM_FARM__BROWSERS)`.
pub(super) fn label(figment: &Figment, path: &str) -> String {
    match env_var(figment, path) {
        Some(var) => format!("{path} (set by {var})"),
        None => path.to_string(),
    }
}

/// The closest of `candidates` to `name`, if it is close enough to be a typo.
fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 4))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// What an operator reads for a key the configuration does not have.
pub(super) fn unknown_key(figment: &Figment, known: &serde_json::Value, key: &str) -> String {
    let (parent, name) = key.rsplit_once('.').unwrap_or(("", key));
    let siblings = if parent.is_empty() {
        Some(known)
    } else {
        parent.split('.').try_fold(known, |v, k| v.get(k))
    };
    let names: Vec<&str> = siblings
        .and_then(|v| v.as_object())
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let what = if parent.is_empty() {
        "unknown section"
    } else {
        "unknown key"
    };
    let suggestion = match closest(name, names) {
        Some(good) => {
            let path = if parent.is_empty() {
                good.to_string()
            } else {
                format!("{parent}.{good}")
            };
            match env_var(figment, key) {
                Some(_) => format!(
                    " (did you mean `SHOTFARM_{}`?)",
                    path.to_uppercase().replace('.', "__")
                ),
                None => format!(" (did you mean `{good}`?)"),
            }
        }
        // A setting written outside its section: name the section it belongs to.
        None if parent.is_empty() => known
            .as_object()
            .and_then(|sections| {
                sections
                    .iter()
                    .find(|(_, keys)| keys.get(name).is_some())
                    .map(|(section, _)| format!(" (`{name}` belongs in [{section}])"))
            })
            .unwrap_or_default(),
        None => String::new(),
    };
    format!("{}: {what}{suggestion}", label(figment, key))
}

/// A deserialization error in an operator's words.
pub(super) fn describe_error(path: &str, error: &figment::Error, got: Option<&Value>) -> String {
    use figment::error::{Actual, Kind};
    let got_text = |actual: &Actual| match got {
        Some(v) => shown(v),
        None => match actual {
            Actual::Str(s) => format!("{s:?}"),
            Actual::Signed(n) => n.to_string(),
            Actual::Unsigned(n) => n.to_string(),
            Actual::Float(n) => n.to_string(),
            Actual::Bool(b) => b.to_string(),
            other => other.to_string(),
        },
    };
    match &error.kind {
        Kind::UnknownVariant(v, expected) => {
            let choices: Vec<String> = expected.iter().map(|e| format!("{e:?}")).collect();
            format!("must be one of {}, got {v:?}", choices.join(", "))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let number = match actual {
                Actual::Signed(n) => Some(*n),
                Actual::Unsigned(n) => i128::try_from(*n).ok(),
                _ => got.and_then(|v| match v {
                    Value::Num(_, n) => n.to_i128(),
                    _ => None,
                }),
            };
            let wanted = match expected.as_str() {
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64"
                | "i128" | "isize" => {
                    let (type_lo, type_hi) = match expected.as_str() {
                        "u8" => (Some(0), Some(i128::from(u8::MAX))),
                        "u16" => (Some(0), Some(i128::from(u16::MAX))),
                        "u32" => (Some(0), Some(i128::from(u32::MAX))),
                        e if e.starts_with('u') => (Some(0), None),
                        _ => (None, None),
                    };
                    let (lo, hi) = match BOUNDS.iter().find(|(p, _, _)| *p == path) {
                        Some(&(_, lo, hi)) => (Some(lo), hi.or(type_hi)),
                        None => (type_lo, type_hi),
                    };
                    whole_number(lo, hi, number)
                }
                "f32" | "f64" => "a number".to_string(),
                "a boolean" => "true or false".to_string(),
                "a string" => "text in quotes".to_string(),
                e if e.contains("sequence") => "a list, like [\"a\", \"b\"]".to_string(),
                e if e.contains("map") || e.starts_with("struct") => "a table of keys".to_string(),
                e => e.to_string(),
            };
            format!("must be {wanted}, got {}", got_text(actual))
        }
        Kind::Message(m) if m.contains("socket address") => format!(
            "`{}` is not an address:port (like 127.0.0.1:8080; the port must be at most 65535)",
            got.map(|v| match v {
                Value::String(_, s) => s.clone(),
                other => shown(other),
            })
            .unwrap_or_default()
        ),
        Kind::UnknownField(name, expected) => {
            let hint = closest(name, expected.iter().copied())
                .map(|good| format!(" (did you mean `{good}`?)"))
                .unwrap_or_default();
            format!("unknown key `{name}`{hint}")
        }
        Kind::MissingField(name) => format!("needs `{name}`"),
        other => other.to_string(),
    }
}
