//! The ledger's invariants, checked on an account's snapshot (tests, and `shotfarm accounts
//! show`). See ARCHITECTURE.md, "Ledger invariants".

use std::collections::HashSet;

use super::store::Snapshot;
use super::TxKind;

/// Every invariant the snapshot breaks, in words; empty when all hold.
pub fn violations(s: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let b = &s.balance;
    if b.available < 0 {
        out.push(format!("available is negative: {}", b.available));
    }
    if b.reserved < 0 || b.spent < 0 {
        out.push(format!(
            "negative reserved {} or spent {}",
            b.reserved, b.spent
        ));
    }
    let held: i64 = s.holds.iter().map(|h| h.amount).sum();
    if b.reserved != held {
        out.push(format!(
            "reserved {} != sum of open holds {held}",
            b.reserved
        ));
    }
    if b.granted != b.available + b.reserved + b.spent {
        out.push(format!(
            "granted {} != available {} + reserved {} + spent {}",
            b.granted, b.available, b.reserved, b.spent
        ));
    }
    let logged: i64 = s.transactions.iter().map(|t| t.amount).sum();
    if logged != b.available + b.reserved {
        out.push(format!(
            "replaying the log gives {logged}, but available + reserved is {}",
            b.available + b.reserved
        ));
    }
    let spent_in_log: i64 = s
        .transactions
        .iter()
        .filter(|t| t.kind == TxKind::Usage)
        .map(|t| -t.amount)
        .sum();
    if spent_in_log != b.spent {
        out.push(format!(
            "usage in the log is {spent_in_log}, but spent is {}",
            b.spent
        ));
    }
    let mut ids = HashSet::new();
    for t in &s.transactions {
        if !ids.insert(t.id.as_str()) {
            out.push(format!("transaction {} appears twice", t.id));
        }
    }
    for h in &s.holds {
        if ids.contains(h.id.as_str()) {
            out.push(format!("hold {} is open but was also charged", h.id));
        }
    }
    for (kind, list) in &s.by_kind {
        let in_log: Vec<&str> = s
            .transactions
            .iter()
            .filter(|t| t.kind == *kind)
            .map(|t| t.id.as_str())
            .collect();
        let own: Vec<&str> = list.iter().map(|t| t.id.as_str()).collect();
        if own != in_log {
            out.push(format!(
                "the {} log holds {own:?}, but the main log's {} entries are {in_log:?}",
                kind.as_str(),
                kind.as_str()
            ));
        }
    }
    let by_day: i64 = s.usage_by_day.iter().map(|(_, n)| n).sum();
    if by_day != b.spent {
        out.push(format!(
            "captures per day add up to {by_day}, but spent is {}",
            b.spent
        ));
    }
    let bonuses = s
        .transactions
        .iter()
        .filter(|t| t.kind == TxKind::SignupBonus)
        .count();
    if bonuses > 1 {
        out.push(format!("{bonuses} signup bonuses"));
    }
    out
}
