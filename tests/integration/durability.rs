//! `ledger.replica_acks`: a credit mutation is answered only once that many replicas hold it
//! (Redis `WAIT`), so an answered charge survives the loss of the primary. A primary and a
//! replica of the test's own; the failover is the replica cut off from its primary
//! (`REPLICAOF NO ONE`) while the primary still takes writes — what a promotion after a lost
//! primary looks like to the ledger. With 1 ack, a charge the replica did not get is never
//! answered (503, free); with 0, it is answered and then lost, and the test counts it.

use std::time::{Duration, Instant};

use testkit::redis::{Persistence, RedisServer};

use crate::support::{
    audited_on, client_with_key, credits_header, enc, on_own_redis, page, provision_on, Daemon,
};

async fn redis_cmd<T: redis::FromRedisValue>(url: &str, cmd: &mut redis::Cmd) -> T {
    let client = redis::Client::open(url).expect("redis url");
    // redis-rs' default response timeout (500 ms) is short for a machine running the suite.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(10)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("redis connection");
    cmd.query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("redis {:?} at {url}: {e}", cmd.args_iter().next()))
}

/// Until the replica at `url` reports its link to the primary up.
async fn wait_linked(url: &str) {
    let start = Instant::now();
    loop {
        let info: String = redis_cmd(url, redis::cmd("INFO").arg("replication")).await;
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "replica never linked: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn daemon(primary: &str, acks: u32) -> Daemon {
    let primary = primary.to_string();
    Daemon::start(move |c| {
        on_own_redis(c, &primary);
        c.ledger.replica_acks = acks;
        c.ledger.replica_ack_timeout_ms = 200;
    })
}

/// A capture of the plain page on `daemon`: status and credits left.
async fn capture(daemon: &Daemon, key: &reqwest::Client) -> (u16, Option<i64>) {
    let r = key
        .get(daemon.url(&format!("/api/v1/screenshot?url={}", enc(&page("/plain")))))
        .send()
        .await
        .expect("capture");
    (r.status().as_u16(), credits_header(&r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_charge_outlives_the_primary_only_with_replica_acks() {
    let primary = RedisServer::start(Persistence::None).expect("primary");
    let port = primary.port.to_string();
    let replica = RedisServer::start_with(Persistence::None, &["--replicaof", "127.0.0.1", &port])
        .expect("replica");
    wait_linked(&replica.url).await;
    let funded = provision_on(&primary.url, 10);
    let durable = daemon(&primary.url, 1);
    let fast = daemon(&primary.url, 0);
    durable.wait_ready(1).await;
    fast.wait_ready(1).await;
    let key = client_with_key(&funded.key);

    // With the replica in step, a durable charge is answered like any other.
    assert_eq!(capture(&durable, &key).await, (200, Some(9)));

    // The replica is cut off (as when it is promoted after the primary is lost).
    let _: String = redis_cmd(&replica.url, redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await;
    // replica_acks = 1: no charge is answered that the replica does not hold — free, 503.
    let (status, _) = capture(&durable, &key).await;
    assert_eq!(
        status, 503,
        "a charge no replica acknowledged is not answered"
    );
    // replica_acks = 0: the primary answers the charge alone.
    let (status, left) = capture(&fast, &key).await;
    assert_eq!(status, 200);
    let answered_by_fast = 1;
    assert!(left.is_some());

    // The primary is lost; the former replica is the ledger now.
    primary.kill();
    let after = audited_on(&replica.url, &funded.account).await;
    // Every charge answered with replica_acks = 1 is there; the one answered with 0 is not.
    assert_eq!(
        after.balance.spent, 1,
        "the durable charge survived, the other was lost"
    );
    let lost = (1 + answered_by_fast) - after.balance.spent;
    assert_eq!(
        lost, 1,
        "with replica_acks = 0 the charge answered last was lost"
    );
    assert!(after.holds.is_empty(), "no hold the new primary must sweep");
    drop((durable, fast));
}
