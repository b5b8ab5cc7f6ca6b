//! The credit ledger against the run's private redis-server, through the ledger actor.
//!
//! - A seeded randomized model: many clients reserve, commit, release, crash, retry, get grants
//!   and run sweeps; after every step an in-memory model must match the account's snapshot in
//!   Redis, and the ledger's invariants must hold. Replay a failure with `LEDGER_SEED=<seed>`
//!   (every assertion message names the seed and the step).
//! - Targeted tests: a hold resolves exactly once, concurrent reserves never overdraw, expired
//!   holds come back once whichever sweeper finds them, the states of an `Idempotency-Key`, and
//!   an unreachable Redis is an error, never a charge.
//!
//! Other tests share this Redis, and the daemons they start sweep every 200 ms, so every test
//! uses fresh accounts, and the model accepts that another sweeper expires a short hold once it
//! is due (checking that it really was due, and that it came back exactly once).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use sha2::{Digest, Sha256};
use shotfarm::config::Config;
use shotfarm::ledger::keys::AccountKeys;
use shotfarm::ledger::store::{self, Snapshot};
use shotfarm::ledger::{
    audit, sweeper, Balance, HoldState, Idempotency, Ledger, LedgerError, Op, Outcome, RedisHandle,
    StoredResult, TxKind,
};
use shotfarm::ops::Operator;
use shotfarm::telemetry::Metrics;

use crate::redis_server::redis_url;
use crate::support::{amounts_of, free_port, Rng};

const LONG_TTL: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs `f` on a fresh actix system on its own thread (the ledger actor needs one); a panic
/// inside fails the calling test with its own message.
pub(crate) fn on_actix<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || shotfarm::ops::block_on(f))
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

pub(crate) fn config() -> Config {
    let mut config = Config::default();
    config.redis.url = redis_url();
    config
}

pub(crate) async fn operator() -> Operator {
    Operator::connect(&config())
        .await
        .expect("operator connects to the test Redis")
}

/// A fresh account (sign-up bonus, then an adjustment) holding exactly `credits`.
pub(crate) async fn funded(op: &Operator, credits: i64) -> String {
    let email = format!("ledger-{}@test.example", uuid::Uuid::new_v4().simple());
    let account = op
        .accounts
        .create(&email, None)
        .await
        .expect("create account")
        .id;
    let bonus = config().auth.signup_bonus;
    if credits != bonus {
        let outcome = op
            .ledger
            .run(Op::Grant {
                account: account.clone(),
                amount: credits - bonus,
                kind: TxKind::Adjustment,
                description: "test funding".into(),
                reference: None,
            })
            .await
            .expect("fund account");
        assert_eq!(outcome, Outcome::Granted { available: credits });
    }
    account
}

fn reserve(account: &str, hold: &str, amount: i64, ttl: Duration) -> Op {
    Op::Reserve {
        account: account.to_string(),
        hold: hold.to_string(),
        amount,
        ttl,
        idempotency: None,
        description: format!("test hold {hold}"),
        max_held: 0,
    }
}

fn reserve_keyed(account: &str, hold: &str, ttl: Duration, idem: &Idempotency) -> Op {
    Op::Reserve {
        account: account.to_string(),
        hold: hold.to_string(),
        amount: 1,
        ttl,
        idempotency: Some(idem.clone()),
        description: format!("test hold {hold}"),
        max_held: 0,
    }
}

fn commit(account: &str, hold: &str) -> Op {
    Op::Commit {
        account: account.to_string(),
        hold: hold.to_string(),
        idempotency: None,
        result: None,
        result_ttl: Duration::from_secs(60),
    }
}

fn release(account: &str, hold: &str) -> Op {
    Op::Release {
        account: account.to_string(),
        hold: hold.to_string(),
        idempotency: None,
    }
}

pub(crate) fn balance(available: i64, reserved: i64, spent: i64, granted: i64) -> Balance {
    Balance {
        available,
        reserved,
        spent,
        granted,
    }
}

async fn snapshot(ledger: &Ledger, account: &str) -> Snapshot {
    let mut conn = ledger.redis().get().expect("connected to the test Redis");
    store::snapshot(&mut conn, account)
        .await
        .expect("snapshot")
        .expect("the account exists")
}

/// The account's snapshot, asserting every ledger invariant holds.
pub(crate) async fn audited(ledger: &Ledger, account: &str, context: &str) -> Snapshot {
    let s = snapshot(ledger, account).await;
    let problems = audit::violations(&s);
    assert!(
        problems.is_empty(),
        "{context}: ledger invariants broken: {problems:?}\n{s:#?}"
    );
    s
}

/// Redis' clock, which decides expiry (ms since the epoch).
async fn redis_now_ms(ledger: &Ledger) -> i64 {
    let mut conn = ledger.redis().get().expect("connected to the test Redis");
    let (secs, micros): (i64, i64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .expect("TIME");
    secs * 1000 + micros / 1000
}

/// How a hold was resolved, as Redis recorded it (`committed`, `released`, `expired`).
/// The snapshot holds exactly one charge (usage transaction), of one credit, for `hold`.
pub(crate) fn assert_one_charge(s: &Snapshot, hold: &str) {
    let usage: Vec<_> = s
        .transactions
        .iter()
        .filter(|t| t.kind == TxKind::Usage)
        .collect();
    assert_eq!(usage.len(), 1, "one charge: {usage:?}");
    assert_eq!((usage[0].id.as_str(), usage[0].amount), (hold, -1));
}

pub(crate) async fn hold_record(ledger: &Ledger, account: &str, hold: &str) -> Option<String> {
    let mut conn = ledger.redis().get().expect("connected to the test Redis");
    redis::cmd("GET")
        .arg(AccountKeys::new(account).hold_record(hold))
        .query_async(&mut conn)
        .await
        .expect("GET hold record")
}

fn local_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// 1. The randomized model
// ---------------------------------------------------------------------------------------------

const CLIENTS: usize = 8;
const STEPS: usize = 2000;
/// A guard against a hung run, not a speed requirement: the model normally runs every step
/// (about 10 s here, 45 s on a busy machine).
const BUDGET: Duration = Duration::from_secs(120);
const START_CREDITS: i64 = 20;

fn seed() -> u64 {
    match std::env::var("LEDGER_SEED") {
        Ok(s) => s.trim().parse().expect("LEDGER_SEED must be a u64"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    }
}

/// An open hold as the model knows it.
#[derive(Debug, Clone)]
struct ModelHold {
    amount: i64,
    ttl: Duration,
    short: bool,
    /// The client crashed and forgot it: only expiry can bring it back.
    crashed: bool,
    /// Redis' expiry, learnt from the first snapshot that shows the hold.
    expires_ms: Option<i64>,
}

/// A resolved hold: how, and the Reserve it came from (for retries).
#[derive(Debug, Clone, Copy)]
struct Resolved {
    state: HoldState,
    amount: i64,
    ttl: Duration,
}

/// One virtual client, with its own account.
struct Client {
    account: String,
    balance: Balance,
    transactions: usize,
    open: BTreeMap<String, ModelHold>,
    resolved: BTreeMap<String, Resolved>,
    crashed: BTreeSet<String>,
    /// Hold ids whose Reserve was refused (never held).
    never_held: Vec<String>,
    /// References applied by grants.
    refs: Vec<String>,
    next_id: u64,
}

impl Client {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:05}", self.next_id)
    }

    fn live_holds(&self) -> Vec<String> {
        self.open
            .iter()
            .filter(|(_, h)| !h.crashed)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Resolves an open hold in the model.
    fn settle(&mut self, hold: &str, state: HoldState) {
        let h = self.open.remove(hold).expect("settling an open hold");
        self.balance.reserved -= h.amount;
        match state {
            HoldState::Committed => {
                self.balance.spent += h.amount;
                self.transactions += 1;
            }
            HoldState::Released | HoldState::Expired => self.balance.available += h.amount,
        }
        self.resolved.insert(
            hold.to_string(),
            Resolved {
                state,
                amount: h.amount,
                ttl: h.ttl,
            },
        );
    }
}

/// What a client does in one step.
#[derive(Debug, Clone)]
enum Action {
    Reserve {
        hold: String,
        amount: i64,
        ttl: Duration,
    },
    Commit {
        hold: String,
    },
    Release {
        hold: String,
    },
    /// The client dies and forgets the hold (no operation is sent).
    Crash {
        hold: String,
    },
    /// The same Reserve again, for a hold id already held (open or resolved).
    RetryReserve {
        hold: String,
        amount: i64,
        ttl: Duration,
    },
    /// A Commit or Release again for a hold already resolved, or never held.
    RetryResolve {
        hold: String,
        commit: bool,
    },
    Grant {
        amount: i64,
        kind: TxKind,
        reference: Option<String>,
    },
}

impl Action {
    fn hold(&self) -> Option<&str> {
        match self {
            Action::Reserve { hold, .. }
            | Action::Commit { hold }
            | Action::Release { hold }
            | Action::Crash { hold }
            | Action::RetryReserve { hold, .. }
            | Action::RetryResolve { hold, .. } => Some(hold),
            Action::Grant { .. } => None,
        }
    }

    fn op(&self, account: &str) -> Option<Op> {
        Some(match self {
            Action::Reserve { hold, amount, ttl } | Action::RetryReserve { hold, amount, ttl } => {
                reserve(account, hold, *amount, *ttl)
            }
            Action::Commit { hold } | Action::RetryResolve { hold, commit: true } => {
                commit(account, hold)
            }
            Action::Release { hold }
            | Action::RetryResolve {
                hold,
                commit: false,
            } => release(account, hold),
            Action::Crash { .. } => return None,
            Action::Grant {
                amount,
                kind,
                reference,
            } => Op::Grant {
                account: account.to_string(),
                amount: *amount,
                kind: *kind,
                description: "model grant".into(),
                reference: reference.clone(),
            },
        })
    }
}

fn plan(rng: &mut Rng, c: &mut Client) -> Action {
    let new_reserve = |rng: &mut Rng, c: &mut Client| {
        let ttl = if rng.percent(40) {
            Duration::from_millis(rng.range(1, 50) as u64)
        } else {
            LONG_TTL
        };
        Action::Reserve {
            hold: c.fresh("h"),
            amount: rng.range(1, 3),
            ttl,
        }
    };
    let live = c.live_holds();
    match rng.below(100) {
        0..=29 => new_reserve(rng, c),
        30..=49 => match rng.pick(&live) {
            Some(hold) => Action::Commit { hold },
            None => new_reserve(rng, c),
        },
        50..=61 => match rng.pick(&live) {
            Some(hold) => Action::Release { hold },
            None => new_reserve(rng, c),
        },
        62..=66 => match rng.pick(&live) {
            Some(hold) => Action::Crash { hold },
            None => new_reserve(rng, c),
        },
        67..=79 => {
            if rng.percent(40) {
                let held: Vec<(String, i64, Duration)> = c
                    .open
                    .iter()
                    .map(|(id, h)| (id.clone(), h.amount, h.ttl))
                    .chain(
                        c.resolved
                            .iter()
                            .map(|(id, r)| (id.clone(), r.amount, r.ttl)),
                    )
                    .collect();
                if let Some((hold, amount, ttl)) = rng.pick(&held) {
                    return Action::RetryReserve { hold, amount, ttl };
                }
            }
            let mut done: Vec<String> = c.resolved.keys().cloned().collect();
            done.extend(c.never_held.iter().cloned());
            let hold = match rng.pick(&done) {
                Some(hold) if !rng.percent(10) => hold,
                _ => c.fresh("never"),
            };
            Action::RetryResolve {
                hold,
                commit: rng.percent(50),
            }
        }
        _ => match rng.below(100) {
            0..=39 => Action::Grant {
                amount: rng.range(1, 5),
                kind: [TxKind::Purchase, TxKind::AutoTopup, TxKind::Adjustment][rng.below(3)],
                reference: None,
            },
            40..=64 => Action::Grant {
                amount: rng.range(1, 5),
                kind: TxKind::Purchase,
                reference: Some(c.fresh("order-")),
            },
            65..=79 if !c.refs.is_empty() => Action::Grant {
                amount: rng.range(1, 5),
                kind: TxKind::Purchase,
                reference: rng.pick(&c.refs),
            },
            _ => Action::Grant {
                amount: -rng.range(1, 8),
                kind: TxKind::Adjustment,
                reference: rng.percent(30).then(|| c.fresh("takeback-")),
            },
        },
    }
}

/// Every total of a subset of `amounts` (the holds another sweeper may have expired).
fn subset_sums(amounts: &[i64]) -> BTreeSet<i64> {
    let mut sums = BTreeSet::from([0]);
    for a in amounts {
        let more: Vec<i64> = sums.iter().map(|s| s + a).collect();
        sums.extend(more);
    }
    sums
}

/// Counts per outcome name, and more, for the report and coverage checks.
#[derive(Default, Debug)]
struct Tally {
    outcomes: BTreeMap<&'static str, usize>,
    crashes: usize,
    expired: usize,
    sweeps: usize,
    /// Holds the model's own sweeps expired (the rival sweeper expires the others).
    swept: usize,
    /// Operations that found their short hold already expired by the rival.
    rivals_first: usize,
    /// Steps during which the rival expired other holds of the same account.
    overlaps: usize,
}

/// Checks one client's step: the outcome against the model, then the model against Redis.
async fn check_step(
    ledger: &Ledger,
    c: &mut Client,
    action: &Action,
    result: Option<Result<Outcome, LedgerError>>,
    ctx: &str,
    window: (i64, i64),
    tally: &mut Tally,
) {
    let outcome = match result {
        Some(Ok(o)) => Some(o),
        Some(Err(e)) => panic!("{ctx}: the ledger failed: {e}"),
        None => None,
    };
    if let Some(o) = &outcome {
        *tally.outcomes.entry(o.name()).or_default() += 1;
    }
    let snap = audited(ledger, &c.account, ctx).await;
    let present: BTreeMap<String, (i64, i64)> = snap
        .holds
        .iter()
        .map(|h| (h.id.clone(), (h.amount, h.expires_ms)))
        .collect();

    // Short holds another sweeper may have expired before (or after) this operation.
    let target = action.hold();
    let gone: Vec<i64> = c
        .open
        .iter()
        .filter(|(id, h)| h.short && Some(id.as_str()) != target && !present.contains_key(*id))
        .map(|(_, h)| h.amount)
        .collect();
    let sums = subset_sums(&gone);
    tally.overlaps += usize::from(!gone.is_empty());
    let base = c.balance.available;
    // `before` is what the operation must have seen as available before its own effect.
    let follows = |before: i64| {
        assert!(
            sums.contains(&(before - base)),
            "{ctx}: got {outcome:?}, but the model had available {base} (and only holds of \
             {gone:?} credits may have expired meanwhile)"
        );
    };
    // A short target hold answered as expired: it must be gone, and it must have been short.
    let expired_target = |hold: &str, c: &Client| {
        let h = &c.open[hold];
        assert!(h.short, "{ctx}: a {:?} hold was expired", h.ttl);
        assert!(
            !present.contains_key(hold),
            "{ctx}: answered expired, but hold {hold} is still open"
        );
        h.amount
    };

    match (action, outcome.as_ref()) {
        (Action::Reserve { hold, amount, ttl }, Some(o)) => match *o {
            Outcome::Reserved { available } => {
                follows(available + amount);
                c.balance.available -= amount;
                c.balance.reserved += amount;
                c.open.insert(
                    hold.clone(),
                    ModelHold {
                        amount: *amount,
                        ttl: *ttl,
                        short: *ttl < LONG_TTL,
                        crashed: false,
                        expires_ms: None,
                    },
                );
            }
            Outcome::Insufficient { available } => {
                follows(available);
                assert!(
                    *amount > available,
                    "{ctx}: refused {amount} with {available} available"
                );
                c.never_held.push(hold.clone());
            }
            ref other => panic!("{ctx}: unexpected {other:?}"),
        },
        (Action::Commit { hold }, Some(o)) | (Action::Release { hold }, Some(o)) => {
            let is_commit = matches!(action, Action::Commit { .. });
            let amount = c.open[hold].amount;
            match *o {
                Outcome::Committed { available, .. } if is_commit => {
                    follows(available);
                    c.settle(hold, HoldState::Committed);
                    let newest = snap.transactions.first().expect("a usage transaction");
                    assert!(
                        newest.id == *hold
                            && newest.kind == TxKind::Usage
                            && newest.amount == -amount
                            && newest.balance_after == available,
                        "{ctx}: the commit logged {newest:?}"
                    );
                }
                Outcome::Released { available } if !is_commit => {
                    follows(available - amount);
                    c.settle(hold, HoldState::Released);
                }
                Outcome::AlreadyResolved {
                    available,
                    state: HoldState::Expired,
                } => {
                    follows(available - expired_target(hold, c));
                    // The expiry itself is accounted below, with the other vanished holds.
                    tally.rivals_first += 1;
                }
                ref other => panic!("{ctx}: unexpected {other:?} for {:?}", c.open[hold]),
            }
        }
        (Action::Crash { hold }, None) => {
            c.open.get_mut(hold).expect("crash an open hold").crashed = true;
            c.crashed.insert(hold.clone());
            tally.crashes += 1;
        }
        (Action::RetryReserve { hold, .. }, Some(o)) => {
            if c.open.contains_key(hold) {
                match *o {
                    Outcome::Reserved { available } => follows(available),
                    Outcome::AlreadyResolved {
                        available,
                        state: HoldState::Expired,
                    } => {
                        follows(available - expired_target(hold, c));
                        tally.rivals_first += 1;
                    }
                    ref other => panic!("{ctx}: retried an open hold: {other:?}"),
                }
            } else {
                let was = c.resolved[hold].state;
                match *o {
                    Outcome::AlreadyResolved { available, state } if state == was => {
                        follows(available)
                    }
                    ref other => panic!("{ctx}: retried a hold resolved {was:?}: {other:?}"),
                }
            }
        }
        (Action::RetryResolve { hold, .. }, Some(o)) => match c.resolved.get(hold) {
            Some(r) => match *o {
                Outcome::AlreadyResolved { available, state } if state == r.state => {
                    follows(available)
                }
                ref other => panic!("{ctx}: retried a hold resolved {:?}: {other:?}", r.state),
            },
            None => match *o {
                Outcome::UnknownHold { available } => follows(available),
                ref other => panic!("{ctx}: a never-held hold answered {other:?}"),
            },
        },
        (
            Action::Grant {
                amount,
                kind,
                reference,
            },
            Some(o),
        ) => {
            let duplicate = reference.as_ref().is_some_and(|r| c.refs.contains(r));
            match *o {
                Outcome::Duplicate { available } if duplicate => follows(available),
                Outcome::Granted { available } if !duplicate => {
                    follows(available - amount);
                    c.balance.available += amount;
                    c.balance.granted += amount;
                    c.transactions += 1;
                    c.refs.extend(reference.iter().cloned());
                    let newest = snap.transactions.first().expect("a grant transaction");
                    assert!(
                        newest.kind == *kind
                            && newest.amount == *amount
                            && newest.balance_after == available,
                        "{ctx}: the grant logged {newest:?}"
                    );
                }
                Outcome::Insufficient { available } if !duplicate && *amount < 0 => {
                    follows(available);
                    assert!(
                        available + amount < 0,
                        "{ctx}: refused {amount} with {available} available"
                    );
                }
                ref other => panic!("{ctx}: unexpected {other:?} (duplicate: {duplicate})"),
            }
        }
        (action, outcome) => panic!("{ctx}: no check for {action:?} → {outcome:?}"),
    }

    tally.expired += account_expiries(ledger, c, &present, ctx).await;
    compare(c, &snap, &present, ctx, window);
}

/// Settles, as expired, every open hold of the model that Redis no longer has: only short holds
/// past their expiry may vanish, and Redis must have recorded them as expired.
async fn account_expiries(
    ledger: &Ledger,
    c: &mut Client,
    present: &BTreeMap<String, (i64, i64)>,
    ctx: &str,
) -> usize {
    let gone: Vec<String> = c
        .open
        .keys()
        .filter(|id| !present.contains_key(*id))
        .cloned()
        .collect();
    for hold in &gone {
        let h = &c.open[hold];
        assert!(
            h.short,
            "{ctx}: hold {hold} ({h:?}) vanished before its expiry"
        );
        let record = hold_record(ledger, &c.account, hold).await;
        assert_eq!(
            record.as_deref(),
            Some("expired"),
            "{ctx}: hold {hold} vanished without being expired"
        );
        if let Some(expires) = h.expires_ms {
            let now = redis_now_ms(ledger).await;
            assert!(
                expires <= now,
                "{ctx}: hold {hold} was expired before its expiry {expires} (Redis time {now})"
            );
        }
        c.settle(hold, HoldState::Expired);
    }
    gone.len()
}

/// The model must equal Redis: counters, log length, and every open hold with its expiry.
fn compare(
    c: &mut Client,
    snap: &Snapshot,
    present: &BTreeMap<String, (i64, i64)>,
    ctx: &str,
    window: (i64, i64),
) {
    assert_eq!(c.balance, snap.balance, "{ctx}: counters differ");
    assert_eq!(
        c.transactions,
        snap.transactions.len(),
        "{ctx}: transaction log length differs"
    );
    let model: BTreeMap<&str, i64> = c
        .open
        .iter()
        .map(|(id, h)| (id.as_str(), h.amount))
        .collect();
    let redis: BTreeMap<&str, i64> = present.iter().map(|(id, h)| (id.as_str(), h.0)).collect();
    assert_eq!(model, redis, "{ctx}: open holds differ");
    for (id, h) in c.open.iter_mut() {
        let expires = present[id].1;
        match h.expires_ms {
            Some(known) => assert_eq!(known, expires, "{ctx}: the expiry of {id} moved"),
            None => {
                // Redis time at the reserve + ttl, the reserve ran between `window.0` and `.1`.
                let ttl = h.ttl.as_millis() as i64;
                assert!(
                    window.0 + ttl - 2 <= expires && expires <= window.1 + ttl + 2,
                    "{ctx}: hold {id} with ttl {ttl} ms expires at {expires}, reserved between \
                     {} and {}",
                    window.0,
                    window.1
                );
                h.expires_ms = Some(expires);
            }
        }
    }
}

/// One sweep pass; `late` sleeps first so every short hold is due. Afterwards no hold due
/// before the pass may be open, and long holds must all still be open.
async fn sweep_step(
    ledger: &Ledger,
    clients: &mut [Client],
    late: bool,
    ctx: &str,
    tally: &mut Tally,
) {
    if late {
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let started = redis_now_ms(ledger).await;
    let swept = sweeper::sweep_once(ledger)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: sweep failed: {e}"));
    tally.sweeps += 1;
    tally.swept += swept;
    let now = local_now_ms();
    for c in clients.iter_mut() {
        let ctx = format!("{ctx} {}", c.account);
        let snap = audited(ledger, &c.account, &ctx).await;
        let present: BTreeMap<String, (i64, i64)> = snap
            .holds
            .iter()
            .map(|h| (h.id.clone(), (h.amount, h.expires_ms)))
            .collect();
        tally.expired += account_expiries(ledger, c, &present, &ctx).await;
        compare(c, &snap, &present, &ctx, (now, now));
        for (id, h) in &c.open {
            let expires = h.expires_ms.expect("known expiry");
            assert!(
                expires > started,
                "{ctx}: hold {id} ({h:?}) was due at {expires} but survived a sweep at {started}"
            );
            assert!(
                !(late && h.short),
                "{ctx}: short hold {id} ({h:?}) survived a sweep after its ttl"
            );
        }
    }
}

async fn model_run(seed: u64) {
    let started = Instant::now();
    let op = operator().await;
    let ledger = op.ledger.clone();
    // Another daemon's sweeper, racing the clients and the model's own sweeps (as the daemons
    // of parallel tests do too).
    let rival = operator().await;
    let rival_sweeper = sweeper::spawn(rival.ledger.clone(), Duration::from_millis(20));
    let mut rng = Rng(seed);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let account = funded(&op, START_CREDITS).await;
        let snap = audited(&ledger, &account, &format!("seed {seed} setup")).await;
        assert_eq!(snap.balance, balance(START_CREDITS, 0, 0, START_CREDITS));
        clients.push(Client {
            account,
            balance: snap.balance,
            transactions: snap.transactions.len(),
            open: BTreeMap::new(),
            resolved: BTreeMap::new(),
            crashed: BTreeSet::new(),
            never_held: Vec::new(),
            refs: Vec::new(),
            next_id: 0,
        });
    }

    let mut tally = Tally::default();
    let mut steps = 0;
    let mut rounds = 0;
    while steps < STEPS && started.elapsed() < BUDGET {
        rounds += 1;
        if rng.percent(4) {
            let late = rng.percent(50);
            let ctx = format!("[LEDGER_SEED={seed} step {steps}] sweep (late: {late})");
            sweep_step(&ledger, &mut clients, late, &ctx, &mut tally).await;
            steps += 1;
            continue;
        }
        // 1 to 4 distinct clients act at once, pipelined through the one actor.
        let mut who: Vec<usize> = (0..CLIENTS).collect();
        let n = (1 + rng.below(4)).min(STEPS - steps);
        let round: Vec<(usize, Action)> = (0..n)
            .map(|_| {
                let i = who.swap_remove(rng.below(who.len()));
                (i, plan(&mut rng, &mut clients[i]))
            })
            .collect();
        let sent = local_now_ms();
        let results = join_all(round.iter().map(|(i, action)| {
            let op = action.op(&clients[*i].account);
            let ledger = &ledger;
            async move {
                match op {
                    Some(op) => Some(ledger.run(op).await),
                    None => None,
                }
            }
        }))
        .await;
        let done = local_now_ms();
        for ((i, action), result) in round.into_iter().zip(results) {
            let ctx = format!(
                "[LEDGER_SEED={seed} step {steps}] {} {action:?}",
                clients[i].account
            );
            check_step(
                &ledger,
                &mut clients[i],
                &action,
                result,
                &ctx,
                (sent, done),
                &mut tally,
            )
            .await;
            steps += 1;
        }
    }

    // The end: every short hold comes back through a sweep, crashed ones included; long
    // holds are still open until their owners release them.
    rival_sweeper.abort();
    let ctx = format!("[LEDGER_SEED={seed} final]");
    sweep_step(&ledger, &mut clients, true, &ctx, &mut tally).await;
    for c in &mut clients {
        for hold in &c.crashed {
            if let Some(r) = c.resolved.get(hold) {
                assert_eq!(r.state, HoldState::Expired, "{ctx}: crashed hold {hold}");
            } else {
                assert!(
                    !c.open[hold].short,
                    "{ctx}: crashed short hold {hold} still open"
                );
            }
        }
        let open: Vec<String> = c.open.keys().cloned().collect();
        for hold in open {
            let outcome = ledger.run(release(&c.account, &hold)).await;
            let amount = c.open[&hold].amount;
            c.settle(&hold, HoldState::Released);
            assert_eq!(
                outcome.ok(),
                Some(Outcome::Released {
                    available: c.balance.available
                }),
                "{ctx}: releasing {hold} ({amount})"
            );
        }
        let snap = audited(&ledger, &c.account, &ctx).await;
        assert_eq!(snap.balance, c.balance, "{ctx}: {}", c.account);
        assert_eq!(
            snap.balance,
            balance(
                c.balance.granted - c.balance.spent,
                0,
                c.balance.spent,
                c.balance.granted
            ),
            "{ctx}: {}",
            c.account
        );
        assert!(snap.holds.is_empty(), "{ctx}: {:?}", snap.holds);
    }

    eprintln!(
        "ledger model: LEDGER_SEED={seed}: {steps} steps in {rounds} rounds, {:.1?}; {tally:?}",
        started.elapsed()
    );
    for outcome in [
        "reserved",
        "committed",
        "released",
        "already_resolved",
        "unknown_hold",
        "granted",
        "duplicate",
    ] {
        assert!(
            tally.outcomes.get(outcome).is_some_and(|n| *n > 0),
            "seed {seed}: the model never saw `{outcome}`: {tally:?}"
        );
    }
    assert!(
        tally.crashes > 0 && tally.expired > 0 && tally.sweeps > 0,
        "seed {seed}: no crash, expiry or sweep: {tally:?}"
    );
    assert!(
        steps == STEPS,
        "seed {seed}: only {steps} of {STEPS} steps within {BUDGET:?}: the ledger hung?"
    );
}

#[test]
fn randomized_model_matches_redis() {
    let seed = seed();
    eprintln!("randomized_model_matches_redis: LEDGER_SEED={seed}");
    on_actix(move || model_run(seed));
}

// ---------------------------------------------------------------------------------------------
// 2.–6. Targeted tests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_hold_resolves_exactly_once() {
    on_actix(|| async {
        let op = operator().await;
        let ledger = &op.ledger;
        let account = funded(&op, 10).await;
        let run = |o: Op| async move { ledger.run(o).await.expect("ledger answers") };

        assert_eq!(
            run(reserve(&account, "h1", 1, LONG_TTL)).await,
            Outcome::Reserved { available: 9 }
        );
        assert_eq!(
            run(commit(&account, "h1")).await,
            Outcome::Committed {
                available: 9,
                low: false,
                crossed: false
            }
        );
        let repeat = Outcome::AlreadyResolved {
            available: 9,
            state: HoldState::Committed,
        };
        assert_eq!(run(commit(&account, "h1")).await, repeat);
        assert_eq!(run(release(&account, "h1")).await, repeat);
        assert_eq!(run(reserve(&account, "h1", 1, LONG_TTL)).await, repeat);

        // The other way round: released first, a late commit charges nothing.
        assert_eq!(
            run(reserve(&account, "h2", 2, LONG_TTL)).await,
            Outcome::Reserved { available: 7 }
        );
        assert_eq!(
            run(release(&account, "h2")).await,
            Outcome::Released { available: 9 }
        );
        assert_eq!(
            run(commit(&account, "h2")).await,
            Outcome::AlreadyResolved {
                available: 9,
                state: HoldState::Released
            }
        );

        let s = audited(ledger, &account, "after the repeats").await;
        assert_eq!(s.balance, balance(9, 0, 1, 10));
        assert!(s.holds.is_empty());
        assert_one_charge(&s, "h1");
        assert_eq!(
            hold_record(ledger, &account, "h1").await.as_deref(),
            Some("committed")
        );
        assert_eq!(
            hold_record(ledger, &account, "h2").await.as_deref(),
            Some("released")
        );
    });
}

#[test]
fn concurrent_reserves_never_overdraw() {
    on_actix(|| async {
        let op = operator().await;
        let ledger = &op.ledger;
        let account = funded(&op, 10).await;
        let holds: Vec<String> = (0..200).map(|i| format!("c{i:03}")).collect();

        let outcomes = join_all(
            holds
                .iter()
                .map(|h| ledger.run(reserve(&account, h, 1, LONG_TTL))),
        )
        .await;
        let mut held = Vec::new();
        let mut after = Vec::new();
        for (hold, outcome) in holds.iter().zip(outcomes) {
            match outcome.expect("ledger answers") {
                Outcome::Reserved { available } => {
                    held.push(hold.clone());
                    after.push(available);
                }
                Outcome::Insufficient { available } => assert_eq!(available, 0),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(held.len(), 10, "exactly 10 of 200 reserves hold a credit");
        after.sort_unstable();
        assert_eq!(after, (0..10).collect::<Vec<i64>>(), "each credit once");
        let s = audited(ledger, &account, "after 200 reserves").await;
        assert_eq!(s.balance, balance(0, 10, 0, 10));
        assert_eq!(s.holds.len(), 10);

        let released = join_all(held.iter().map(|h| ledger.run(release(&account, h)))).await;
        let mut after: Vec<i64> = released
            .into_iter()
            .map(|o| match o.expect("ledger answers") {
                Outcome::Released { available } => available,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        after.sort_unstable();
        assert_eq!(after, (1..=10).collect::<Vec<i64>>());
        let s = audited(ledger, &account, "after releasing all").await;
        assert_eq!(s.balance, balance(10, 0, 0, 10));
        assert!(s.holds.is_empty());
    });
}

#[test]
fn expired_holds_come_back_through_any_sweeper() {
    on_actix(|| async {
        let (a, b) = (operator().await, operator().await);
        let account = funded(&a, 10).await;
        let log_len = snapshot(&a.ledger, &account).await.transactions.len();

        // A hold not due yet is left alone, even when asked directly.
        assert_eq!(
            a.ledger
                .run(reserve(&account, "long", 1, LONG_TTL))
                .await
                .ok(),
            Some(Outcome::Reserved { available: 9 })
        );
        let not_due = a
            .ledger
            .run(Op::Expire {
                account: account.clone(),
                hold: "long".into(),
                idempotency_key_hash: String::new(),
                member: format!("{account}|long|"),
            })
            .await;
        assert_eq!(not_due.ok(), Some(Outcome::NotDue { available: 9 }));
        assert_eq!(
            a.ledger.run(release(&account, "long")).await.ok(),
            Some(Outcome::Released { available: 10 })
        );

        // Two sweepers (two processes' ledgers) find the same due hold at once.
        assert_eq!(
            a.ledger
                .run(reserve(&account, "short", 1, Duration::from_millis(50)))
                .await
                .ok(),
            Some(Outcome::Reserved { available: 9 })
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (ra, rb) = futures::join!(
            sweeper::sweep_once(&a.ledger),
            sweeper::sweep_once(&b.ledger)
        );
        ra.expect("sweep a");
        rb.expect("sweep b");
        let s = audited(&a.ledger, &account, "after two sweeps").await;
        assert_eq!(
            s.balance,
            balance(10, 0, 0, 10),
            "the credit came back once"
        );
        assert!(s.holds.is_empty());
        assert_eq!(s.transactions.len(), log_len, "an expiry logs nothing");
        assert_eq!(
            hold_record(&a.ledger, &account, "short").await.as_deref(),
            Some("expired")
        );

        // The capture finishes after all: no charge, no second credit.
        let late = Outcome::AlreadyResolved {
            available: 10,
            state: HoldState::Expired,
        };
        assert_eq!(
            b.ledger.run(commit(&account, "short")).await.ok(),
            Some(late.clone())
        );
        assert_eq!(
            b.ledger.run(release(&account, "short")).await.ok(),
            Some(late.clone())
        );
        let s = audited(&a.ledger, &account, "after the late commit").await;
        assert_eq!(s.balance, balance(10, 0, 0, 10));

        // Counting outcomes: take a hold out of the sweep index before it is due (so no sweeper
        // of a parallel test can win the race), then both ledgers expire it at once.
        assert_eq!(
            a.ledger
                .run(reserve(&account, "raced", 2, Duration::from_millis(300)))
                .await
                .ok(),
            Some(Outcome::Reserved { available: 8 })
        );
        let member = format!("{account}|raced|");
        let mut conn = a.ledger.redis().get().expect("connected");
        let removed: i64 = redis::cmd("ZREM")
            .arg(AccountKeys::new(&account).sweep())
            .arg(&member)
            .query_async(&mut conn)
            .await
            .expect("ZREM");
        assert_eq!(removed, 1, "the sweep index names the hold {member}");
        tokio::time::sleep(Duration::from_millis(350)).await;
        let expire = Op::Expire {
            account: account.clone(),
            hold: "raced".into(),
            idempotency_key_hash: String::new(),
            member,
        };
        let (ea, eb) = futures::join!(a.ledger.run(expire.clone()), b.ledger.run(expire));
        let mut outcomes = vec![ea.expect("expire a"), eb.expect("expire b")];
        outcomes.sort_by_key(|o| o.name());
        assert_eq!(
            outcomes,
            vec![late.clone(), Outcome::Expired { available: 10 }]
        );
        let s = audited(&a.ledger, &account, "after the raced expiry").await;
        assert_eq!(s.balance, balance(10, 0, 0, 10));
        assert_eq!(
            a.ledger.run(commit(&account, "raced")).await.ok(),
            Some(late)
        );
    });
}

#[test]
fn idempotency_states() {
    on_actix(|| async {
        let op = operator().await;
        let ledger = &op.ledger;
        let account = funded(&op, 10).await;
        let run = |o: Op| async move { ledger.run(o).await.expect("ledger answers") };
        let reserve = |hold: &str, k: &Idempotency| run(reserve_keyed(&account, hold, LONG_TTL, k));
        let commit = |hold: &str, k: &Idempotency, result: Option<StoredResult>| {
            run(Op::Commit {
                account: account.clone(),
                hold: hold.into(),
                idempotency: Some(k.clone()),
                result,
                result_ttl: Duration::from_secs(60),
            })
        };
        let key = |name: &str, params: &str| Idempotency {
            key_hash: sha256_hex(name),
            fingerprint: sha256_hex(params),
        };

        // A key in flight, then reused with other parameters.
        let k1 = key("key-1", "url=a");
        assert_eq!(reserve("a1", &k1).await, Outcome::Reserved { available: 9 });
        assert_eq!(
            reserve("a2", &k1).await,
            Outcome::IdempotencyInFlight { available: 9 }
        );
        let other_params = key("key-1", "url=b");
        assert_eq!(
            reserve("a3", &other_params).await,
            Outcome::IdempotencyMismatch { available: 9 }
        );

        // It succeeds: the same key replays the stored result at no charge.
        let stored = StoredResult {
            meta: r#"{"content_type":"image/png"}"#.into(),
            body: vec![0x89, b'P', b'N', b'G', 0, 0xff, b'|', b'\n', 0],
        };
        assert_eq!(
            commit("a1", &k1, Some(stored.clone())).await,
            Outcome::Committed {
                available: 9,
                low: false,
                crossed: false
            }
        );
        assert_eq!(
            reserve("a4", &k1).await,
            Outcome::IdempotencyReplay {
                available: 9,
                result: stored,
            }
        );
        assert_eq!(
            reserve("a5", &other_params).await,
            Outcome::IdempotencyMismatch { available: 9 }
        );
        let s = audited(ledger, &account, "after the replay").await;
        assert_eq!(s.balance, balance(9, 0, 1, 10), "charged once");
        assert!(s.holds.is_empty(), "replays and refusals hold nothing");

        // Succeeded with a result too large to keep.
        let k2 = key("key-2", "url=big");
        assert_eq!(reserve("b1", &k2).await, Outcome::Reserved { available: 8 });
        assert_eq!(
            commit("b1", &k2, None).await,
            Outcome::Committed {
                available: 8,
                low: false,
                crossed: false
            }
        );
        assert_eq!(
            reserve("b2", &k2).await,
            Outcome::IdempotencyResultUnavailable { available: 8 }
        );

        // A failed capture frees its key.
        let k3 = key("key-3", "url=fails");
        assert_eq!(reserve("c1", &k3).await, Outcome::Reserved { available: 7 });
        assert_eq!(
            run(Op::Release {
                account: account.clone(),
                hold: "c1".into(),
                idempotency: Some(k3.clone()),
            })
            .await,
            Outcome::Released { available: 8 }
        );
        assert_eq!(reserve("c2", &k3).await, Outcome::Reserved { available: 7 });
        assert_eq!(
            run(Op::Release {
                account: account.clone(),
                hold: "c2".into(),
                idempotency: Some(k3),
            })
            .await,
            Outcome::Released { available: 8 }
        );

        // So does a capture whose daemon died: the sweeper expires the hold and frees the key.
        let k4 = key("key-4", "url=dies");
        assert_eq!(
            run(reserve_keyed(
                &account,
                "d1",
                Duration::from_millis(20),
                &k4
            ))
            .await,
            Outcome::Reserved { available: 7 }
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        sweeper::sweep_once(ledger).await.expect("sweep");
        assert_eq!(
            hold_record(ledger, &account, "d1").await.as_deref(),
            Some("expired")
        );
        assert_eq!(reserve("d2", &k4).await, Outcome::Reserved { available: 7 });

        let s = audited(ledger, &account, "at the end").await;
        assert_eq!(s.balance, balance(7, 1, 2, 10));
    });
}

#[test]
fn redis_unreachable_is_an_error_not_a_charge() {
    on_actix(|| async {
        // Nothing listens on this port.
        let mut closed = config();
        closed.redis.url = format!("redis://127.0.0.1:{}/0", free_port());
        closed.redis.connect_timeout_ms = 300;
        closed.redis.response_timeout_ms = 300;
        assert!(Operator::connect(&closed).await.is_err());
        let handle = RedisHandle::new(&closed.redis).expect("a valid url");
        let connected = handle.connect().await;
        assert!(
            matches!(connected, Err(LedgerError::Unavailable(_))),
            "connecting to a closed port: {:?}",
            connected.err()
        );
        let ledger = Ledger::start(handle, Arc::new(Metrics::new()));
        let account = format!("acc_{}", shotfarm::ledger::new_id());
        let outcome = ledger.run(reserve(&account, "h", 1, LONG_TTL)).await;
        assert!(
            matches!(outcome, Err(LedgerError::Unavailable(_))),
            "reserve without Redis: {outcome:?}"
        );
        assert!(matches!(
            ledger.balance(&account).await,
            Err(LedgerError::Unavailable(_))
        ));

        // A ledger of the real Redis that has not connected yet refuses too, and charges
        // nothing; once connected it works.
        let op = operator().await;
        let account = funded(&op, 3).await;
        let handle = RedisHandle::new(&config().redis).expect("a valid url");
        let early = Ledger::start(handle.clone(), Arc::new(Metrics::new()));
        let outcome = early.run(reserve(&account, "h", 1, LONG_TTL)).await;
        assert!(
            matches!(outcome, Err(LedgerError::Unavailable(_))),
            "reserve before connecting: {outcome:?}"
        );
        let s = audited(&op.ledger, &account, "after the refused reserve").await;
        assert_eq!(s.balance, balance(3, 0, 0, 3));
        assert!(s.holds.is_empty());
        handle.connect().await.expect("connects to the test Redis");
        assert_eq!(
            early.run(reserve(&account, "h", 1, LONG_TTL)).await.ok(),
            Some(Outcome::Reserved { available: 2 })
        );
    });
}

#[test]
fn exactly_one_concurrent_commit_crosses_the_low_balance_threshold() {
    on_actix(|| async {
        let op = operator().await;
        let ledger = &op.ledger;
        let account = funded(&op, 20).await;
        let auto_topup = |enabled: bool| {
            let (op, account) = (&op, account.clone());
            async move {
                op.accounts
                    .set_auto_topup(
                        &account,
                        &mut shotfarm::accounts::AutoTopup {
                            enabled,
                            threshold: 15,
                            pack_id: "pack_starter".into(),
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("settings");
            }
        };
        auto_topup(true).await;
        // 12 captures in flight at once, then all commit at once: owned balance 20 → 8.
        let holds: Vec<String> = (0..12).map(|i| format!("x{i:02}")).collect();
        for outcome in join_all(
            holds
                .iter()
                .map(|h| ledger.run(reserve(&account, h, 1, LONG_TTL))),
        )
        .await
        {
            assert!(
                matches!(outcome, Ok(Outcome::Reserved { .. })),
                "{outcome:?}"
            );
        }
        let commits = join_all(holds.iter().map(|h| ledger.run(commit(&account, h)))).await;
        let mut crossed = 0;
        for outcome in commits {
            match outcome.expect("ledger answers") {
                Outcome::Committed {
                    available,
                    low,
                    crossed: c,
                    ..
                } => {
                    assert_eq!(available, 8, "every hold was already taken from available");
                    assert!(low, "8 is below the threshold of 15");
                    crossed += usize::from(c);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(crossed, 1, "one commit took the balance from 15 to 14");
        // Once below, further charges are low but do not cross again.
        let charge = |hold: &'static str| {
            let account = account.clone();
            async move {
                ledger
                    .run(reserve(&account, hold, 1, LONG_TTL))
                    .await
                    .expect("reserve");
                ledger.run(commit(&account, hold)).await.expect("commit")
            }
        };
        let low = |available: i64, low: bool| Outcome::Committed {
            available,
            low,
            crossed: false,
        };
        assert_eq!(charge("y").await, low(7, true));
        // Disabled: neither low nor crossing.
        auto_topup(false).await;
        assert_eq!(charge("z").await, low(6, false));
        audited(ledger, &account, "after the crossing").await;
    });
}

#[test]
fn refunds_wait_for_their_payment_never_overdraw_and_take_each_share_once() {
    on_actix(|| async {
        let op = operator().await;
        let ledger = &op.ledger;
        let account = funded(&op, 3).await;
        let refund = |order: &str, refunded: i64| Op::Refund {
            account: account.clone(),
            order: order.to_string(),
            refunded,
            description: "refund".into(),
        };
        let adjust = |amount: i64, description: &str| Op::Grant {
            account: account.clone(),
            amount,
            kind: TxKind::Adjustment,
            description: description.into(),
            reference: None,
        };
        let pay = |order: &str, amount: i64| Op::Grant {
            account: account.clone(),
            amount,
            kind: TxKind::Purchase,
            description: "purchase".into(),
            reference: Some(format!("polar_order:{order}")),
        };
        // A refund that overtakes its payment changes nothing and says so.
        let early = ledger.run(refund("o1", 10)).await.expect("ledger answers");
        assert_eq!(early, Outcome::NotCredited { available: 3 });
        audited(ledger, &account, "after an early refund").await;

        // Paid 10 (balance 13), then 11 spent elsewhere: a full refund finds 2 unspent.
        ledger.run(pay("o1", 10)).await.expect("grant");
        let spend = ledger
            .run(adjust(-11, "spent"))
            .await
            .expect("ledger answers");
        assert_eq!(spend, Outcome::Granted { available: 2 });
        let outcomes = join_all((0..5).map(|_| ledger.run(refund("o1", 10)))).await;
        let taken: Vec<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                Ok(Outcome::Refunded { available, taken }) => Some((*available, *taken)),
                _ => None,
            })
            .collect();
        let duplicates = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Outcome::Duplicate { available: 0 })))
            .count();
        assert_eq!((taken, duplicates), (vec![(0, 2)], 4), "{outcomes:?}");
        audited(ledger, &account, "after the full refund").await;

        // Successive partial refunds of another order: 30 of 100, then 80 of 100 cumulative,
        // each taking only its new share; a stale (lower) report and a repeat take nothing.
        ledger.run(pay("o2", 100)).await.expect("grant");
        let first = ledger.run(refund("o2", 30)).await.expect("refund");
        assert_eq!(
            first,
            Outcome::Refunded {
                available: 70,
                taken: 30
            }
        );
        let second = ledger.run(refund("o2", 80)).await.expect("refund");
        assert_eq!(
            second,
            Outcome::Refunded {
                available: 20,
                taken: 50
            }
        );
        for stale in [80, 30] {
            let again = ledger.run(refund("o2", stale)).await.expect("refund");
            assert_eq!(again, Outcome::Duplicate { available: 20 });
        }
        // With nothing unspent a refund is still recorded, at 0, and never overdraws.
        ledger.run(adjust(-20, "spent")).await.expect("spend");
        let last = ledger.run(refund("o2", 100)).await.expect("refund");
        assert_eq!(
            last,
            Outcome::Refunded {
                available: 0,
                taken: 0
            }
        );
        let s = audited(ledger, &account, "after the partial refunds").await;
        let refunds = amounts_of(&s, TxKind::Refund);
        assert_eq!(refunds, vec![0, -50, -30, -2]);
        assert!(
            s.transactions[0]
                .description
                .ends_with(": 0 unspent credits taken back"),
            "{:?}",
            s.transactions[0].description
        );
        // Without a refund's clamp, an overdraw is refused.
        let refused = ledger
            .run(adjust(-1, "too much"))
            .await
            .expect("ledger answers");
        assert_eq!(refused, Outcome::Insufficient { available: 0 });
    });
}
