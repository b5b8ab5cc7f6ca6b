//! The group `WAIT` behind `ledger.replica_acks`. Callers whose writes were answered queue
//! here with the epoch of the link that carried them; one `WAIT acks timeout` on the current
//! link answers the whole group (a `WAIT` covers every earlier write of its connection), and
//! callers arriving meanwhile make the next group. So concurrent operations share replication
//! round trips instead of queueing one `WAIT` each.
//!
//! A `WAIT` counts from its connection's last write, and a ledger script that finds its work
//! already done (a retry) writes nothing: so each group's `WAIT` follows an `INCR` of
//! [`keys::replica_wait_tick`] in the same pipeline, and covers every write the primary held then.
//!
//! A caller whose link is not the one the `WAIT` ran on is answered `Unavailable`: its writes
//! went down a connection that is gone, maybe to a primary that is gone, and a `WAIT` elsewhere
//! says nothing about them (its retry re-applies or re-finds them on the current link).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::link::Following;
use crate::ledger::{keys, LedgerError};

type Answer = oneshot::Sender<Result<(), LedgerError>>;

/// Where callers queue: the epoch of their writes' link, and their answer.
pub type Queue = mpsc::UnboundedSender<(u64, Answer)>;

/// Starts the task that answers the queue; it ends when every sender is dropped.
pub fn start(following: Arc<Following>, acks: u32, timeout: Duration) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(group_waits(following, acks, timeout, rx));
    tx
}

/// Queues a caller whose writes went down the link of `epoch`, until its group is answered.
pub async fn wait(queue: &Queue, epoch: u64) -> Result<(), LedgerError> {
    let stopped = || LedgerError::Unavailable("the replica wait stopped".into());
    let (reply, answer) = oneshot::channel();
    queue.send((epoch, reply)).map_err(|_| stopped())?;
    answer.await.unwrap_or_else(|_| Err(stopped()))
}

async fn group_waits(
    following: Arc<Following>,
    acks: u32,
    timeout: Duration,
    mut queue: mpsc::UnboundedReceiver<(u64, Answer)>,
) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while let Ok(next) = queue.try_recv() {
            group.push(next);
        }
        let Some(link) = following.link() else {
            answer_all(group, |_| {
                Err(LedgerError::Unavailable("not connected to Redis".into()))
            });
            continue;
        };
        // Nobody in this group wrote on this link: no WAIT can vouch for them.
        if group.iter().all(|(epoch, _)| *epoch != link.epoch) {
            answer_all(group, |_| Err(moved()));
            continue;
        }
        let mut conn = link.conn.clone();
        // The tick first: a write of this connection, after every write the primary holds now
        // (the group's included, whichever connection of this process made them).
        let waited: Result<(i64, i64), _> = redis::pipe()
            .cmd("INCR")
            .arg(keys::replica_wait_tick())
            .cmd("WAIT")
            .arg(acks)
            .arg(ms)
            .query_async(&mut conn)
            .await;
        let waited = waited.map(|(_, got)| got);
        if let Err(e) = &waited {
            following.suspect(e);
        }
        let result = match waited {
            Ok(got) if got >= i64::from(acks) => Ok(()),
            Ok(got) => Err(LedgerError::Unavailable(format!(
                "only {got} of the {acks} replicas ledger.replica_acks asks for acknowledged the write within {ms} ms"
            ))),
            Err(e) => Err(LedgerError::from(e)),
        };
        answer_all(group, |epoch| {
            if epoch == link.epoch {
                result.clone()
            } else {
                Err(moved())
            }
        });
    }
}

fn moved() -> LedgerError {
    LedgerError::Unavailable(
        "the Redis connection that carried the write was replaced before replicas acknowledged it"
            .into(),
    )
}

fn answer_all(group: Vec<(u64, Answer)>, result: impl Fn(u64) -> Result<(), LedgerError>) {
    for (epoch, caller) in group {
        let _ = caller.send(result(epoch));
    }
}
