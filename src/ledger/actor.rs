//! The ledger actor: the one owner of credit mutations in a process.
//!
//! Its mailbox fixes the order of operations. Each handler hands its operation to the *pump*
//! at once (the reply channel travels with it, so answers go from the pump straight to the
//! caller), and the pump sends it on the shared multiplexed connection before it looks at the
//! next one (one poll enqueues the `EVALSHA`; redis-rs' queue is FIFO), then lets the replies
//! come back in the background. So operations reach Redis in mailbox order while many are in
//! flight: ordered, not one round trip at a time.
//!
//! Two cases re-send an operation, and a re-sent operation can be overtaken by later ones:
//! - Operations that are idempotent (all but a grant without a reference) are retried twice on a
//!   connection error: a retry after a lost reply finds the hold already resolved and changes
//!   nothing.
//! - A Redis that lost its script cache (a restart) answers `NOSCRIPT`; redis-rs then loads the
//!   script and sends the call again. Scripts are loaded when the process connects, so this only
//!   happens after Redis itself restarts.
//!
//! Nothing depends on the arrival order of two unrelated operations: a commit or release is only
//! sent after its own reserve was answered, and each script re-checks the state it needs.

use crate::telemetry::events::{InternalEvent, LedgerOperationDone, LedgerOperationFailed};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::{store, LedgerError, Op, Outcome, RedisHandle};
use crate::telemetry::Metrics;

type Reply = Result<Outcome, LedgerError>;

/// Run one ledger operation; the outcome goes to `reply` (straight from the pump to the caller,
/// so the answer does not travel back through the actor's thread).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Mutate {
    pub op: Op,
    pub reply: oneshot::Sender<Reply>,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Reply>,
}

pub struct LedgerActor {
    pump: mpsc::UnboundedSender<Request>,
}

impl Actor for LedgerActor {
    type Context = Context<Self>;
}

impl Handler<Mutate> for LedgerActor {
    type Result = ();

    fn handle(&mut self, msg: Mutate, _: &mut Context<Self>) {
        let request = Request {
            op: msg.op,
            reply: msg.reply,
        };
        if let Err(mpsc::error::SendError(request)) = self.pump.send(request) {
            let _ = request.reply.send(Err(LedgerError::Unavailable(
                "the ledger pump stopped".into(),
            )));
        }
    }
}

/// Sends operations in arrival order and keeps many in flight.
async fn pump(
    mut queue: mpsc::UnboundedReceiver<Request>,
    redis: RedisHandle,
    metrics: Arc<Metrics>,
) {
    let mut in_flight: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send>>> =
        FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            next = queue.recv() => {
                let Some(request) = next else { break };
                let mut fut: Pin<Box<dyn Future<Output = ()> + Send>> =
                    Box::pin(run(redis.clone(), request, metrics.clone()));
                // The first poll puts the command on the connection's queue.
                if futures::poll!(fut.as_mut()).is_pending() {
                    in_flight.push(fut);
                }
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.next().await.is_some() {}
}

async fn run(redis: RedisHandle, request: Request, metrics: Arc<Metrics>) {
    let started = Instant::now();
    let op = &request.op;
    let result = match redis.get() {
        Ok(conn) => {
            let mut attempt = 0;
            loop {
                // Each attempt on one link, so the WAIT below can vouch for its writes.
                let mut conn = conn.pinned();
                let done = match store::execute(&mut conn, op).await {
                    // Answered only once durable on the replicas `ledger.replica_acks` names
                    // (also a re-check that changed nothing: an earlier attempt's write may
                    // not have reached them yet).
                    Ok(outcome) => match redis.wait_for_replicas(&conn).await {
                        Ok(()) => Ok(outcome),
                        // Not safe to run again blindly: say that it ran.
                        Err(LedgerError::Unavailable(e)) if !op.is_idempotent() => {
                            Err(LedgerError::Unavailable(format!(
                                "applied on the primary, not yet durable ({e}): check the \
                                 account before running it again"
                            )))
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                match done {
                    Err(LedgerError::Unavailable(e)) if op.is_idempotent() && attempt < 2 => {
                        tracing::warn!(operation = op.name(), "ledger retry after: {e}");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(100 * 3u64.pow(attempt - 1)))
                            .await;
                    }
                    other => break other,
                }
            }
        }
        Err(e) => Err(e),
    };
    let (operation, elapsed) = (op.name(), started.elapsed());
    match &result {
        Ok(outcome) => {
            LedgerOperationDone {
                operation,
                outcome: outcome.name(),
                elapsed,
            }
            .emit(&metrics);
            count_credits(&metrics, op, outcome);
        }
        Err(error) => LedgerOperationFailed {
            operation,
            elapsed,
            error,
        }
        .emit(&metrics),
    }
    let _ = request.reply.send(result);
}

/// Credits moved by an applied operation, in `shotfarm_credits_*`. Every hold is one credit
/// (a capture), so a commit, release or expiry moves one.
fn count_credits(metrics: &Metrics, op: &Op, outcome: &Outcome) {
    let moved = |movement: &str, n: i64| {
        metrics
            .credits_total
            .with_label_values(&[movement])
            .inc_by(n.max(0).unsigned_abs());
    };
    match (op, outcome) {
        (Op::Reserve { amount, .. }, Outcome::Reserved { .. }) => moved("reserved", *amount),
        (Op::Reserve { .. }, Outcome::Insufficient { .. }) => {
            metrics.insufficient_credits_total.inc()
        }
        (Op::Commit { .. }, Outcome::Committed { .. }) => moved("committed", 1),
        (Op::Release { .. }, Outcome::Released { .. }) => moved("released", 1),
        (Op::Expire { .. }, Outcome::Expired { .. }) => moved("expired", 1),
        (Op::Grant { amount, kind, .. }, Outcome::Granted { .. }) if *amount > 0 => metrics
            .credits_granted_total
            .with_label_values(&[kind.as_str()])
            .inc_by(amount.unsigned_abs()),
        (Op::Grant { amount, kind, .. }, Outcome::Granted { .. }) => metrics
            .credits_taken_back_total
            .with_label_values(&[kind.as_str()])
            .inc_by(amount.unsigned_abs()),
        (Op::Refund { .. }, Outcome::Refunded { taken, .. }) => metrics
            .credits_taken_back_total
            .with_label_values(&["refund"])
            .inc_by(taken.max(&0).unsigned_abs()),
        (Op::CreateAccount { .. }, Outcome::Created { bonus }) if *bonus > 0 => metrics
            .credits_granted_total
            .with_label_values(&["signup_bonus"])
            .inc_by(bonus.unsigned_abs()),
        _ => {}
    }
}

/// The ledger as the rest of the daemon sees it: mutations go through the actor, reads go
/// straight to Redis.
#[derive(Clone)]
pub struct Ledger {
    addr: Addr<LedgerActor>,
    redis: RedisHandle,
}

impl Ledger {
    /// Starts the actor and its pump. Call from inside an actix system.
    pub fn start(redis: RedisHandle, metrics: Arc<Metrics>) -> Ledger {
        // The capture path's operation series exist, at zero, before their first event.
        LedgerOperationDone::register(
            &metrics,
            &[
                ("reserve", "reserved"),
                ("commit", "committed"),
                ("release", "released"),
                ("expire", "expired"),
                ("grant", "granted"),
            ],
        );
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(pump(rx, redis.clone(), metrics));
        let addr = LedgerActor { pump: tx }.start();
        Ledger { addr, redis }
    }

    /// Runs one mutation through the actor.
    pub async fn run(&self, op: Op) -> Reply {
        let (reply, answer) = oneshot::channel();
        // The mailbox is unbounded here on purpose: each message only moves to the pump.
        self.addr.do_send(Mutate { op, reply });
        answer
            .await
            .unwrap_or_else(|_| Err(LedgerError::Unavailable("the ledger actor is gone".into())))
    }

    /// The counters of an account, `None` if there is no such account.
    pub async fn balance(&self, account: &str) -> Result<Option<super::Balance>, LedgerError> {
        let mut conn = self.redis.get()?;
        store::balance(&mut conn, account).await
    }

    /// A page of the account's transactions (of one kind, if given), newest first, and their
    /// total count.
    pub async fn transactions(
        &self,
        account: &str,
        offset: usize,
        limit: usize,
        kind: Option<super::TxKind>,
    ) -> Result<(Vec<super::Transaction>, usize), LedgerError> {
        let mut conn = self.redis.get()?;
        store::transactions(&mut conn, account, offset, limit, kind).await
    }

    /// Captures charged on each of `days` (UTC dates), in order.
    pub async fn usage_by_day(
        &self,
        account: &str,
        days: &[String],
    ) -> Result<Vec<i64>, LedgerError> {
        let mut conn = self.redis.get()?;
        store::usage_by_day(&mut conn, account, days).await
    }

    /// Cache hits on each of `days` (UTC dates), in order.
    pub async fn cache_hits_by_day(
        &self,
        account: &str,
        days: &[String],
    ) -> Result<Vec<i64>, LedgerError> {
        let mut conn = self.redis.get()?;
        store::cache_hits_by_day(&mut conn, account, days).await
    }

    /// Counts a capture answered from the cache today (UTC), at no charge.
    pub async fn record_cache_hit(&self, account: &str) -> Result<(), LedgerError> {
        let mut conn = self.redis.get()?;
        store::record_cache_hit(&mut conn, account, &crate::timestamps::utc_date_today()).await
    }

    pub fn redis(&self) -> &RedisHandle {
        &self.redis
    }
}
