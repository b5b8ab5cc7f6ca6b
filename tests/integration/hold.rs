//! `ledger::Hold`, the charging invariant, against the run's private redis-server with no HTTP
//! in sight: a held credit is charged once by a commit, given back by a release or by dropping
//! the hold, refusals hold nothing, an unreachable ledger holds nothing, a commit after a
//! sweeper expired the hold is free; and a seeded random mix of all of these leaves exactly
//! one charge per commit (replay a failure with `HOLD_SEED=<seed>`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shotfarm::ledger::{
    sweeper, Hold, HoldRequest, Ledger, LedgerError, Outcome, RedisHandle, Reservation, Settled,
    TxKind,
};
use shotfarm::telemetry::Metrics;

use super::ledger::{
    assert_one_charge, audited, balance, config, funded, hold_record, on_actix, operator,
};
use crate::support::{free_port, Rng};

const LONG_TTL: Duration = Duration::from_secs(60);

fn request(account: &str, ttl: Duration, max_held: i64) -> HoldRequest {
    HoldRequest {
        account: account.to_string(),
        ttl,
        idempotency: None,
        description: "hold test".into(),
        max_held,
    }
}

async fn held(ledger: &Ledger, account: &str) -> Hold {
    match Hold::reserve(ledger, request(account, LONG_TTL, 0)).await {
        Ok(Reservation::Held(hold)) => hold,
        other => panic!("expected a hold for {account}: {other:?}"),
    }
}

/// Waits (bounded) until the hold's record says `state`.
async fn wait_record(ledger: &Ledger, account: &str, hold: &str, state: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if hold_record(ledger, account, hold).await.as_deref() == Some(state) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[test]
fn a_committed_hold_is_charged_exactly_once() {
    on_actix(|| async {
        let op = operator().await;
        let account = funded(&op, 3).await;
        let hold = held(&op.ledger, &account).await;
        assert_eq!(hold.available(), 2);
        let id = hold.id().to_string();
        let s = audited(&op.ledger, &account, "while held").await;
        assert_eq!(s.balance, balance(2, 1, 0, 3));

        let settled = hold.commit(None, Duration::from_secs(60)).await;
        assert_eq!(
            settled,
            Settled::Charged {
                available: 2,
                low: false,
                crossed: false
            }
        );
        let s = audited(&op.ledger, &account, "after the commit").await;
        assert_eq!(s.balance, balance(2, 0, 1, 3));
        assert!(s.holds.is_empty());
        assert_one_charge(&s, &id);
        assert_eq!(
            hold_record(&op.ledger, &account, &id).await.as_deref(),
            Some("committed")
        );
    });
}

#[test]
fn a_released_or_dropped_hold_gives_the_credit_back() {
    on_actix(|| async {
        let op = operator().await;
        let account = funded(&op, 3).await;

        let hold = held(&op.ledger, &account).await;
        let id = hold.id().to_string();
        assert_eq!(hold.release().await, Some(3));
        assert_eq!(
            hold_record(&op.ledger, &account, &id).await.as_deref(),
            Some("released")
        );

        // Dropped unsettled (an early return, a panic, a cancelled task): released behind.
        let hold = held(&op.ledger, &account).await;
        let id = hold.id().to_string();
        drop(hold);
        assert!(
            wait_record(&op.ledger, &account, &id, "released").await,
            "a dropped hold is released"
        );
        let s = audited(&op.ledger, &account, "after release and drop").await;
        assert_eq!(s.balance, balance(3, 0, 0, 3));
        assert!(s.holds.is_empty());
        assert!(s.transactions.iter().all(|t| t.kind != TxKind::Usage));
    });
}

#[test]
fn refusals_and_an_unreachable_ledger_hold_nothing() {
    on_actix(|| async {
        let op = operator().await;
        let one = funded(&op, 1).await;
        let only = held(&op.ledger, &one).await;
        let refused = Hold::reserve(&op.ledger, request(&one, LONG_TTL, 0)).await;
        assert!(
            matches!(
                refused,
                Ok(Reservation::Refused(Outcome::Insufficient { available: 0 }))
            ),
            "no credit left: {refused:?}"
        );
        assert_eq!(only.release().await, Some(1));

        // The cap on credits in flight: the second hold is refused until the first settles.
        let account = funded(&op, 5).await;
        let first = match Hold::reserve(&op.ledger, request(&account, LONG_TTL, 1)).await {
            Ok(Reservation::Held(hold)) => hold,
            other => panic!("first hold: {other:?}"),
        };
        let second = Hold::reserve(&op.ledger, request(&account, LONG_TTL, 1)).await;
        assert!(
            matches!(
                second,
                Ok(Reservation::Refused(Outcome::TooManyInFlight { .. }))
            ),
            "over the cap: {second:?}"
        );
        assert_eq!(first.release().await, Some(5));
        let s = audited(&op.ledger, &account, "after the refusals").await;
        assert_eq!(s.balance, balance(5, 0, 0, 5));
        assert!(s.holds.is_empty());

        // Nothing listens on this port: an error, never a hold.
        let mut closed = config();
        closed.redis.url = format!("redis://127.0.0.1:{}/0", free_port());
        closed.redis.connect_timeout_ms = 300;
        closed.redis.response_timeout_ms = 300;
        let handle = RedisHandle::new(&closed.redis).expect("a valid url");
        let _ = handle.connect().await;
        let down = Ledger::start(handle, Arc::new(Metrics::new()));
        let outcome = Hold::reserve(&down, request(&account, LONG_TTL, 0)).await;
        assert!(
            matches!(outcome, Err(LedgerError::Unavailable(_))),
            "reserve without Redis: {outcome:?}"
        );
        let s = audited(&op.ledger, &account, "after the unreachable ledger").await;
        assert_eq!(s.balance, balance(5, 0, 0, 5));
    });
}

#[test]
fn a_commit_after_the_sweeper_expired_the_hold_is_free() {
    on_actix(|| async {
        let op = operator().await;
        let account = funded(&op, 2).await;
        let hold = match Hold::reserve(&op.ledger, request(&account, Duration::from_millis(50), 0))
            .await
        {
            Ok(Reservation::Held(hold)) => hold,
            other => panic!("hold: {other:?}"),
        };
        let id = hold.id().to_string();
        // Other tests' daemons sweep this Redis too: whichever sweeper comes first expires it.
        let until = Instant::now() + Duration::from_secs(5);
        while hold_record(&op.ledger, &account, &id).await.as_deref() != Some("expired")
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(60)).await;
            sweeper::sweep_once(&op.ledger).await.expect("sweep");
        }
        let settled = hold.commit(None, Duration::from_secs(60)).await;
        assert_eq!(
            settled,
            Settled::Voided { available: Some(2) },
            "the late commit charges nothing"
        );
        let s = audited(&op.ledger, &account, "after the late commit").await;
        assert_eq!(s.balance, balance(2, 0, 0, 2));
        assert_eq!(
            hold_record(&op.ledger, &account, &id).await.as_deref(),
            Some("expired")
        );
    });
}

fn seed() -> u64 {
    std::env::var("HOLD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// Many holds of one account, each settled at random by a commit, a release or a drop, some
/// concurrently: afterwards exactly the committed ones are charged, each once, and nothing is
/// held or lost.
#[test]
fn any_mix_of_settlements_charges_exactly_the_commits() {
    let seed = seed();
    on_actix(move || async move {
        let op = operator().await;
        let mut rng = Rng(seed);
        let start = 40;
        let account = funded(&op, start).await;
        let mut commits = 0i64;
        let mut dropped = Vec::new();
        for round in 0..6 {
            let n = 1 + rng.below(6);
            let mut holds = Vec::new();
            for _ in 0..n {
                holds.push(held(&op.ledger, &account).await);
            }
            let mut settling = Vec::new();
            for hold in holds {
                match rng.below(3) {
                    0 => {
                        commits += 1;
                        settling.push(tokio::spawn(async move {
                            matches!(
                                hold.commit(None, Duration::from_secs(60)).await,
                                Settled::Charged { .. }
                            )
                        }));
                    }
                    1 => settling.push(tokio::spawn(async move { hold.release().await.is_some() })),
                    _ => {
                        dropped.push(hold.id().to_string());
                        drop(hold);
                    }
                }
            }
            for task in settling {
                assert!(
                    task.await.expect("join"),
                    "seed {seed}, round {round}: a settlement failed"
                );
            }
        }
        for id in &dropped {
            assert!(
                wait_record(&op.ledger, &account, id, "released").await,
                "seed {seed}: dropped hold {id} released"
            );
        }
        let s = audited(&op.ledger, &account, &format!("seed {seed}")).await;
        assert_eq!(
            s.balance,
            balance(start - commits, 0, commits, start),
            "seed {seed}: exactly the commits are charged"
        );
        assert!(s.holds.is_empty(), "seed {seed}: nothing left held");
        let usage = s
            .transactions
            .iter()
            .filter(|t| t.kind == TxKind::Usage)
            .count() as i64;
        assert_eq!(usage, commits, "seed {seed}: one usage row per commit");
    });
}
