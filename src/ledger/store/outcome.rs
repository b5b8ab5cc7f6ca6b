//! A script's reply (`{outcome, available, …}`) read as an [`Outcome`].

use redis::Value;

use crate::ledger::{HoldState, LedgerError, Outcome, StoredResult};

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        _ => Vec::new(),
    }
}

/// Turns a script's `{outcome, available, …}` reply into an [`Outcome`].
pub(super) fn parse_outcome(reply: Value) -> Result<Outcome, LedgerError> {
    let bad = || LedgerError::Protocol(format!("{reply:?}"));
    let Value::Array(items) = &reply else {
        return Err(bad());
    };
    let name = items.first().and_then(text).ok_or_else(bad)?;
    let available = items.get(1).and_then(int).ok_or_else(bad)?;
    let state = || {
        items
            .get(2)
            .and_then(text)
            .as_deref()
            .and_then(HoldState::parse)
            .ok_or_else(bad)
    };
    Ok(match name.as_str() {
        "ok" | "held" => Outcome::Reserved { available },
        "insufficient" => Outcome::Insufficient { available },
        "busy" => Outcome::TooManyInFlight { available },
        "no_account" => Outcome::NoAccount,
        "idem_inflight" => Outcome::IdempotencyInFlight { available },
        "idem_mismatch" => Outcome::IdempotencyMismatch { available },
        "idem_unavailable" => Outcome::IdempotencyResultUnavailable { available },
        "idem_done" => Outcome::IdempotencyReplay {
            available,
            result: StoredResult {
                meta: items.get(2).and_then(text).unwrap_or_default(),
                body: items.get(3).map(bytes).unwrap_or_default(),
            },
        },
        "committed" => Outcome::Committed {
            available,
            low: items.get(2).and_then(int) == Some(1),
            crossed: items.get(3).and_then(int) == Some(1),
        },
        "released" => Outcome::Released { available },
        "expired" => Outcome::Expired { available },
        "not_due" => Outcome::NotDue { available },
        "resolved" => Outcome::AlreadyResolved {
            available,
            state: state()?,
        },
        "unknown" => Outcome::UnknownHold { available },
        "granted" => Outcome::Granted { available },
        "duplicate" => Outcome::Duplicate { available },
        "refunded" => Outcome::Refunded {
            available,
            taken: items.get(2).and_then(int).ok_or_else(bad)?,
        },
        "not_credited" => Outcome::NotCredited { available },
        "created" => Outcome::Created { bonus: available },
        "exists" => Outcome::AccountExists,
        _ => return Err(bad()),
    })
}
