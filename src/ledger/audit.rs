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
