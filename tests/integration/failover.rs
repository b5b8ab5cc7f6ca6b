//! A Sentinel failover under load: a primary, two replicas and three Sentinels of the test's own
//! (Debian's `redis-server` and `redis-sentinel`), two daemons that find the primary through the
//! Sentinels — one with `ledger.replica_acks = 1`, one with 0 — each capturing for its own
//! account while Polar's `order.paid` and `order.refunded` webhooks arrive (re-sent until
//! answered 200, as Polar does).
//!
//! The replicas are stalled (SIGSTOP) and cut off while the load runs, then the primary is
//! SIGKILLed and the replicas resumed: the Sentinels promote one without the writes the primary answered meanwhile
//! (the other replica keeps `replica_acks = 1` satisfiable after the switch).
//! The daemons follow the new primary without a restart and keep serving. Then, counted against
//! the ledger's own log on the new primary:
//! - `replica_acks = 1`: every charge the ledger answered (its `committed` counter) is there
//!   (and no more than the images delivered), and every order and refund a webhook answer acknowledged is applied exactly once;
//! - `replica_acks = 0`: the charges and grants lost are counted (the stall makes some), and
//!   `shotfarm payments reconcile`, through the Sentinels too, restores every grant and refund.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::sentinel::{SentinelGroup, MASTER};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer};

use crate::payments::{
    deliver_to, of_kind, order_json, orders_page, paid, polar_signer, reconcile_with, refunded,
    with_webhooks, OrderSpec,
};
use crate::support::{
    audited_on, client_with_key, enc, metric_value, page, provision_on, Daemon, Funded,
};

/// How long the load runs before the fault, and after the Sentinels named the new primary.
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(4);
/// How long the replicas are stalled before the primary dies (under the Sentinels'
/// down-after time, so they still count them as candidates).
const STALL: Duration = Duration::from_millis(800);
/// Most orders per daemon: the stand-in lists them on one page of Polar's 100.
const MAX_ORDERS: usize = 90;

fn daemon(group: &SentinelGroup, acks: u32) -> Daemon {
    let sentinels = group.sentinel_urls();
    let url = group.servers[0].url.clone();
    Daemon::start(move |c| {
        c.farm.browsers = 1;
        c.redis.url = url;
        c.redis.sentinels = sentinels;
        c.redis.sentinel_master = MASTER.to_string();
        c.redis.response_timeout_ms = 500;
        c.redis.connect_timeout_ms = 500;
        c.ledger.replica_acks = acks;
        c.ledger.replica_ack_timeout_ms = 200;
        // Holds a failed release left behind expire soon (capture timeout + grace).
        c.capture.default_timeout_ms = 5_000;
        c.ledger.hold_grace_ms = 1_000;
        c.ledger.sweep_interval_ms = 200;
        with_webhooks(c);
    })
}

/// What one daemon's load saw.
#[derive(Default)]
struct Seen {
    captured: usize,
    captured_after_failover: usize,
    refused: Vec<u16>,
    /// Order ids acknowledged (200) as paid, and as refunded.
    paid: Vec<String>,
    refunded: Vec<String>,
    /// Refunds made at Polar (acknowledged or not).
    refunds_at_polar: usize,
    orders: Vec<Value>,
}

struct Load {
    seen: Arc<Mutex<Seen>>,
    failed_over: Arc<AtomicBool>,
}

/// Captures (two clients) and webhooks (one sender) on `daemon` until `stop`.
fn load(
    daemon: &Daemon,
    funded: &Funded,
    stop: &Arc<AtomicBool>,
) -> (Load, Vec<tokio::task::JoinHandle<()>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let failed_over = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (seen, stop, failed_over) = (seen.clone(), stop.clone(), failed_over.clone());
        let key = client_with_key(&funded.key);
        let url = daemon.url(&format!(
            "/api/v1/screenshot?url={}&width=160&height=120",
            enc(&page("/plain"))
        ));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let status = match key.get(&url).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let _ = r.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                let ok = status == 200;
                {
                    let mut s = seen.lock().expect("seen");
                    if ok {
                        s.captured += 1;
                        if failed_over.load(Ordering::SeqCst) {
                            s.captured_after_failover += 1;
                        }
                    } else {
                        s.refused.push(status);
                    }
                }
                if !ok {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let (base, account) = (daemon.url(""), funded.account.clone());
    let (seen2, stop2) = (seen.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        let signer = polar_signer();
        let mut n = 0;
        while !stop2.load(Ordering::SeqCst) && n < MAX_ORDERS {
            n += 1;
            let order = OrderSpec::new(&account, "pack_starter");
            let granted = acknowledged(&base, &signer.deliver(&paid(&order))).await;
            assert!(granted, "an order.paid is never refused");
            let id = order_json(&order, 0)["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let refund = n % 3 == 0;
            let refund_acknowledged =
                refund && acknowledged(&base, &signer.deliver(&refunded(&order))).await;
            {
                let mut s = seen2.lock().expect("seen");
                s.paid.push(id.clone());
                if refund_acknowledged {
                    s.refunded.push(id.clone());
                }
                if refund {
                    s.refunds_at_polar += 1;
                    s.orders.push(order_json(&order, 500));
                } else {
                    s.orders.push(order_json(&order, 0));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }));
    (Load { seen, failed_over }, tasks)
}

/// Delivers a webhook until it is answered 200 (Polar retries what is not): true. False when
/// it was refused as `order_not_credited` (a refund whose payment the ledger lost) for 3 s:
/// Polar keeps retrying such a refund, and `payments reconcile` applies it.
async fn acknowledged(base: &str, delivery: &crate::payments::Delivery) -> bool {
    let start = Instant::now();
    loop {
        let (status, body) = deliver_to(base, delivery).await;
        if status == 200 {
            return true;
        }
        if status == 409 && body["error"]["code"] == "order_not_credited" {
            if start.elapsed() > Duration::from_secs(3) {
                return false;
            }
        } else {
            assert!(
                status == 503 || status == 0,
                "a webhook answered {status}: {body}"
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a webhook never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn committed(daemon: &Daemon) -> i64 {
    let text = daemon.metrics_text().await;
    metric_value(&text, "shotfarm_credits_total{movement=\"committed\"}") as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_under_load_loses_nothing_answered_with_replica_acks() {
    let group = SentinelGroup::start(2, 3).expect("a primary, two replicas and three Sentinels");
    let old = group.primary_port().expect("the primary");
    let primary_url = group.servers[0].url.clone();
    let durable_account = provision_on(&primary_url, 500);
    let fast_account = provision_on(&primary_url, 500);
    let durable = daemon(&group, 1);
    let fast = daemon(&group, 0);
    durable.wait_ready(1).await;
    fast.wait_ready(1).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (durable_load, mut tasks) = load(&durable, &durable_account, &stop);
    let (fast_load, more) = load(&fast, &fast_account, &stop);
    tasks.extend(more);
    tokio::time::sleep(BEFORE).await;

    // The replicas stall; the primary answers alone, then dies; the replicas resume and the
    // Sentinels promote one.
    let replicas = [group.servers[1].pid, group.servers[2].pid];
    for pid in replicas {
        assert!(testkit::process::signal(pid, libc::SIGSTOP));
    }
    // Their links are cut while they cannot reconnect, so nothing written from here on reaches
    // them (what a partition does; a stalled process would still find the bytes in its socket).
    let cut = std::process::Command::new("redis-cli")
        .args(["-p", &old.to_string(), "CLIENT", "KILL", "TYPE", "replica"])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&cut.stdout).trim(), "2");
    tokio::time::sleep(STALL).await;
    group.servers[0].kill();
    for pid in replicas {
        assert!(testkit::process::signal(pid, libc::SIGCONT));
    }
    let promoted =
        tokio::task::block_in_place(|| group.wait_failover(old, Duration::from_secs(30)))
            .expect("the Sentinels promote the replica");
    assert_ne!(promoted, old);
    for l in [&durable_load, &fast_load] {
        l.failed_over.store(true, Ordering::SeqCst);
    }
    tokio::time::sleep(AFTER).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("a load task");
    }

    // Both daemons kept serving on the new primary, without a restart.
    for (name, l) in [
        ("replica_acks = 1", &durable_load),
        ("replica_acks = 0", &fast_load),
    ] {
        let s = l.seen.lock().expect("seen");
        assert!(
            s.captured_after_failover >= 3,
            "{name}: only {} captures after the failover (refused: {:?})",
            s.captured_after_failover,
            s.refused
        );
        assert!(
            s.refused.iter().all(|c| [0, 503].contains(c)),
            "{name}: a capture failed otherwise than 503 ledger_unavailable: {:?}",
            s.refused
        );
    }
    let new_primary = group.server(promoted).expect("the new primary").url.clone();

    // replica_acks = 1: nothing the ledger answered is lost.
    let d = audited_on(&new_primary, &durable_account.account).await;
    let answered = committed(&durable).await;
    let (paid_d, refunded_d, images_d) = {
        let s = durable_load.seen.lock().expect("seen");
        assert_eq!(
            s.refunded.len(),
            s.refunds_at_polar,
            "no refund waits for a lost payment"
        );
        (s.paid.len(), s.refunded.len(), s.captured as i64)
    };
    assert!(answered > 0);
    // A charge whose answer was "not durable yet" (the stall) may still have reached a
    // replica: it is there too, and its image was delivered.
    assert!(
        d.balance.spent >= answered && d.balance.spent <= images_d,
        "every charge answered with replica_acks = 1 is on the new primary, and each is an \
         image delivered: {answered} answered <= {} charged <= {images_d} images",
        d.balance.spent
    );
    assert_eq!(
        of_kind(&d, "purchase"),
        paid_d,
        "every acknowledged order, once"
    );
    assert_eq!(
        of_kind(&d, "refund"),
        refunded_d,
        "every acknowledged refund, once"
    );
    assert!(
        d.holds.is_empty() || eventually_no_holds(&new_primary, &durable_account.account).await
    );

    // replica_acks = 0: the stall made the primary answer writes no replica had.
    let f = audited_on(&new_primary, &fast_account.account).await;
    let answered_fast = committed(&fast).await;
    let (paid_f, refunded_f, at_polar_f, orders) = {
        let s = fast_load.seen.lock().expect("seen");
        (
            s.paid.len(),
            s.refunded.len(),
            s.refunds_at_polar,
            s.orders.clone(),
        )
    };
    let lost_charges = answered_fast - f.balance.spent;
    let lost_grants = paid_f as i64 - of_kind(&f, "purchase") as i64;
    let lost_refunds = refunded_f as i64 - of_kind(&f, "refund") as i64;
    eprintln!(
        "failover: replica_acks = 1 answered {answered} charges, {paid_d} orders, {refunded_d} refunds, lost none; \
         replica_acks = 0 answered {answered_fast} charges, {paid_f} orders, {refunded_f} refunds, \
         lost {lost_charges} charges, {lost_grants} grants, {lost_refunds} refunds"
    );
    assert!(
        lost_charges >= 0 && lost_grants >= 0 && lost_refunds >= 0,
        "nothing appears that was not answered"
    );
    assert!(
        lost_charges + lost_grants + lost_refunds >= 1,
        "with replica_acks = 0 the writes of the stall are lost"
    );

    // `payments reconcile` (through the Sentinels) restores every grant and refund.
    let polar = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/orders/"))
        .and(query_param("page", "1"))
        .respond_with(orders_page(orders, 1))
        .mount(&polar)
        .await;
    let report = reconcile(&group, &polar.uri());
    eprintln!("reconcile: {report}");
    let f = audited_on(&new_primary, &fast_account.account).await;
    assert_eq!(
        of_kind(&f, "purchase"),
        paid_f,
        "every paid order granted once"
    );
    assert_eq!(of_kind(&f, "refund"), at_polar_f, "every refund taken once");
    assert!(
        report.contains(&format!("{lost_grants} credited now")),
        "{report}"
    );
    drop((durable, fast));
}

/// Until no hold of `account` is open on `url`: a hold whose release the failover failed is swept
/// when it expires (capture timeout + grace, 6 s here).
async fn eventually_no_holds(url: &str, account: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if audited_on(url, account).await.holds.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// `shotfarm payments reconcile` (the real binary), finding the primary through the Sentinels.
fn reconcile(group: &SentinelGroup, polar: &str) -> String {
    let sentinels: Vec<String> = group
        .sentinel_urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect();
    let redis = format!(
        "sentinels = [{}]\nsentinel_master = \"{MASTER}\"",
        sentinels.join(", ")
    );
    let dir = tempfile::tempdir().expect("tmp");
    reconcile_with(dir.path(), &redis, polar)
}
