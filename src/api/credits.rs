//! The credits endpoints of the contract: `GET /api/v1/credits` (balance),
//! `GET /api/v1/credits/packs` (public), `GET /api/v1/credits/transactions?limit=&offset=`
//! (and `&type=`); beyond it, `GET /api/v1/credits/usage?days=` (captures per UTC day).

use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::auth::{authenticate, Allow};
use super::errors::ledger_unavailable;
use super::errors::{ApiError, FieldError};
use super::json::{iso_time, json_response};
use super::{with_request_id, ApiState};
use crate::ledger::TxKind;

/// Largest page of transactions.
pub const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 20;
/// Deepest offset accepted (a guard against absurd scans).
const MAX_OFFSET: usize = 10_000_000;
/// Longest usage history shown, in days.
const MAX_DAYS: i64 = 366;

async fn balance(state: ApiState, headers: HeaderMap) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::KeyOrSession).await?;
    let balance = state
        .ledger
        .balance(&who.account)
        .await
        .map_err(ledger_unavailable)?
        .unwrap_or_default();
    let topup = state.accounts.auto_topup(&who.account).await?;
    // Beyond the contract's `balance`: the low-balance prompt of auto top-up.
    let low = topup.enabled && balance.available < topup.threshold;
    let suggested = low
        .then(|| state.payments.pack(&topup.pack_id))
        .flatten()
        .map(|p| pack_json(&p));
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "balance": balance.available,
            "reserved": balance.reserved,
            "lowBalance": low,
            "autoTopup": topup,
            "suggestedPack": suggested,
        }),
    ))
}

fn pack_json(p: &crate::config::PackConfig) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "name": p.name,
        "credits": p.credits,
        "priceCents": p.price_cents,
        "isPopular": p.popular,
    })
}

fn packs(state: &ApiState) -> Response {
    let packs: Vec<_> = state.payments.packs().iter().map(pack_json).collect();
    json_response(StatusCode::OK, &packs)
}

/// One page of the history: `limit`, `offset` and the optional `type`.
#[derive(Debug, PartialEq, Eq)]
struct Page {
    limit: usize,
    offset: usize,
    kind: Option<TxKind>,
}

/// `limit`, `offset` and `type` from a query string; every problem named.
fn page(query: &str) -> Result<Page, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut offset = 0;
    let mut kind = None;
    let mut errors = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let number = value.trim().parse::<usize>();
        match name.as_ref() {
            "limit" => match number {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => errors.push(FieldError {
                    field: "limit".into(),
                    message: format!("must be an integer from 1 to {MAX_LIMIT}"),
                }),
            },
            "offset" => match number {
                Ok(n) if n <= MAX_OFFSET => offset = n,
                _ => errors.push(FieldError {
                    field: "offset".into(),
                    message: format!("must be an integer from 0 to {MAX_OFFSET}"),
                }),
            },
            "type" if value.is_empty() => kind = None,
            "type" => match TxKind::parse(&value) {
                Some(k) => kind = Some(k),
                None => errors.push(FieldError {
                    field: "type".into(),
                    message: format!(
                        "must be one of {}",
                        TxKind::ALL.map(TxKind::as_str).join(", ")
                    ),
                }),
            },
            other => errors.push(FieldError {
                field: other.to_string(),
                message: "unknown parameter".into(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(Page {
            limit,
            offset,
            kind,
        })
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// `days` from a query string: 1 to [`MAX_DAYS`], 30 when absent.
fn days(query: &str) -> Result<i64, ApiError> {
    let mut days = 30;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let problem = match (name.as_ref(), value.trim().parse::<i64>()) {
            ("days", Ok(n)) if (1..=MAX_DAYS).contains(&n) => {
                days = n;
                continue;
            }
            ("days", _) => (
                "days".to_string(),
                format!("must be an integer from 1 to {MAX_DAYS}"),
            ),
            (other, _) => (other.to_string(), "unknown parameter".to_string()),
        };
        return Err(ApiError::invalid(vec![FieldError {
            field: problem.0,
            message: problem.1,
        }]));
    }
    Ok(days)
}

/// `GET /api/v1/credits/usage?days=30`: captures charged and captures answered free from the
/// cache per UTC day, oldest first, every day present (0 when none), and their totals.
async fn usage(state: ApiState, headers: HeaderMap, query: String) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::KeyOrSession).await?;
    let days = days(&query)?;
    let today = time::OffsetDateTime::now_utc().date();
    let dates: Vec<String> = (0..days)
        .rev()
        .map(|back| crate::timestamps::utc_date(today - time::Duration::days(back)))
        .collect();
    let counts = state
        .ledger
        .usage_by_day(&who.account, &dates)
        .await
        .map_err(ledger_unavailable)?;
    let hits = state
        .ledger
        .cache_hits_by_day(&who.account, &dates)
        .await
        .map_err(ledger_unavailable)?;
    let total: i64 = counts.iter().sum();
    let total_hits: i64 = hits.iter().sum();
    let entries: Vec<_> = dates
        .iter()
        .zip(counts.iter().zip(&hits))
        .map(|(date, (captures, hits))| {
            serde_json::json!({ "date": date, "captures": captures, "cacheHits": hits })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "days": entries, "total": total, "totalCacheHits": total_hits }),
    ))
}

async fn transactions(
    state: ApiState,
    headers: HeaderMap,
    query: String,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, Allow::KeyOrSession).await?;
    let Page {
        limit,
        offset,
        kind,
    } = page(&query)?;
    let (entries, total) = state
        .ledger
        .transactions(&who.account, offset, limit, kind)
        .await
        .map_err(ledger_unavailable)?;
    let entries: Vec<_> = entries
        .iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id,
                "type": t.kind.as_str(),
                "amount": t.amount,
                "description": t.description,
                "timestamp": iso_time(t.at_ms),
                "balanceAfter": t.balance_after,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "transactions": entries,
            "total": total,
            "limit": limit,
            "offset": offset,
        }),
    ))
}

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let balance = warp::path!("api" / "v1" / "credits")
        .and(warp::get())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .then(|id: String, s, h| super::answer(id, balance(s, h)));
    let packs = warp::path!("api" / "v1" / "credits" / "packs")
        .and(warp::get())
        .and(with_request_id())
        .and(with_state.clone())
        .then(|id: String, s: ApiState| super::answer(id, async move { Ok(packs(&s)) }));
    let transactions = warp::path!("api" / "v1" / "credits" / "transactions")
        .and(warp::get())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(|id: String, s, h, q| super::answer(id, transactions(s, h, q)));
    let usage = warp::path!("api" / "v1" / "credits" / "usage")
        .and(warp::get())
        .and(with_request_id())
        .and(with_state)
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(|id: String, s, h, q| super::answer(id, usage(s, h, q)));
    balance
        .or(packs)
        .unify()
        .or(transactions)
        .unify()
        .or(usage)
        .unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_parameters_are_checked_and_capped() {
        let plain = |limit, offset| Page {
            limit,
            offset,
            kind: None,
        };
        assert_eq!(page("").ok(), Some(plain(DEFAULT_LIMIT, 0)));
        assert_eq!(page("limit=10&offset=0").ok(), Some(plain(10, 0)));
        assert_eq!(page("type=").ok(), Some(plain(DEFAULT_LIMIT, 0)));
        assert_eq!(
            page("type=auto_topup&limit=5").ok(),
            Some(Page {
                limit: 5,
                offset: 0,
                kind: Some(TxKind::AutoTopup)
            })
        );
        for bad in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=ten",
            "offset=-5",
            "offset=1e3",
            "limt=5",
            "type=usagee",
            "type=Usage",
        ] {
            let err = page(bad).expect_err(bad);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn usage_days_are_checked() {
        assert_eq!(days("").ok(), Some(30));
        assert_eq!(days("days=7").ok(), Some(7));
        assert_eq!(days("days=366").ok(), Some(366));
        for bad in ["days=0", "days=367", "days=-1", "days=x", "weeks=2"] {
            assert!(days(bad).is_err(), "{bad}");
        }
    }
}
