//! Many daemons, one ledger, on a real Redis Cluster: three primaries on loopback ports made
//! with `redis-cli --cluster create`, and several daemons against it. Load on one account spread
//! over every daemon spends exactly its credits; a daemon SIGKILLed mid-load leaves only holds
//! that another daemon's sweeper expires; a Polar webhook delivered to every host credits once.

use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;

use crate::payments::{deliver_to, paid, polar_signer, OrderSpec};
use crate::redis_server::{cluster_nodes, cluster_nodes_toml};
use crate::support::{
    audited_in, client_with_key, credits_header, enc, page, provision_in, spawn_binary_with,
    wait_ready_at, Daemon, Funded,
};

fn cluster_redis() -> shotfarm::config::RedisConfig {
    shotfarm::config::RedisConfig {
        cluster_nodes: cluster_nodes(),
        ..Default::default()
    }
}

fn fund(credits: i64) -> Funded {
    let config = shotfarm::config::Config {
        redis: cluster_redis(),
        ..Default::default()
    };
    let email = format!("c{}@test.example", uuid::Uuid::new_v4().simple());
    provision_in(config, &email, credits)
}

/// A daemon on the cluster: one browser, payments' webhook secret set (Polar's format).
fn daemon() -> Daemon {
    Daemon::start(|c| {
        c.redis = cluster_redis();
        c.farm.browsers = 1;
        c.jobs.workers = 2;
        crate::payments::with_webhooks(c);
    })
}

/// Polls the account (auditing every invariant each time) until `done` holds, within `limit`.
async fn balance_becomes(
    account: &str,
    limit: Duration,
    done: impl Fn(&shotfarm::ledger::Balance) -> bool,
) -> bool {
    let start = std::time::Instant::now();
    loop {
        let s = audited_in(&cluster_redis(), account).await;
        if done(&s.balance) {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn capture_url(base: &str, target: &str) -> String {
    format!(
        "{base}/api/v1/screenshot?url={}&width=200&height=150",
        enc(target)
    )
}

#[tokio::test]
async fn load_on_one_account_over_three_daemons_spends_exactly_its_credits() {
    let daemons = [daemon(), daemon(), daemon()];
    for d in &daemons {
        d.wait_ready(1).await;
    }
    let funded = fund(12);
    let key = client_with_key(&funded.key);
    // 48 requests at once, round robin over the three hosts, on 12 credits.
    let answers = join_all((0..48).map(|i| {
        let url = capture_url(&daemons[i % 3].url(""), &page("/plain"));
        let key = key.clone();
        async move {
            let r = key.get(url).send().await.expect("capture");
            (r.status().as_u16(), credits_header(&r))
        }
    }))
    .await;
    let images = answers.iter().filter(|a| a.0 == 200).count();
    let refused = answers.iter().filter(|a| a.0 == 402).count();
    let busy = answers.iter().filter(|a| a.0 == 429).count();
    // Every answer is an image, a 402, or (the per-account in-flight cap, counted across every
    // host) a 429 at no cost.
    assert_eq!(
        images + refused + busy,
        48,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    let s = audited_in(&cluster_redis(), &funded.account).await;
    assert_eq!(
        (s.balance.spent, s.balance.reserved),
        (images as i64, 0),
        "every image charged once, nothing else"
    );
    assert_eq!(s.balance.available, 12 - images as i64);
    // Drain what is left, spread over the hosts again, until the 402: exactly 12 images in all.
    let mut more = 0;
    for i in 0.. {
        let r = key
            .get(capture_url(&daemons[i % 3].url(""), &page("/plain")))
            .send()
            .await
            .expect("capture");
        match r.status().as_u16() {
            200 => more += 1,
            402 => {
                assert_eq!(credits_header(&r), Some(0));
                break;
            }
            other => panic!("unexpected {other}"),
        }
        assert!(i < 24, "no 402 after {i} more captures");
    }
    assert_eq!(images + more, 12);
    let s = audited_in(&cluster_redis(), &funded.account).await;
    assert_eq!(
        (s.balance.available, s.balance.reserved, s.balance.spent),
        (0, 0, 12)
    );
    assert_eq!(s.usage_by_day.iter().map(|d| d.1).sum::<i64>(), 12);
}

#[tokio::test]
async fn a_daemon_killed_mid_load_leaves_holds_that_another_daemon_expires() {
    // The survivor sweeps every 200 ms (test default).
    let survivor = daemon();
    survivor.wait_ready(1).await;
    let profiles = tempfile::tempdir().expect("profiles");
    let nodes = cluster_nodes_toml();
    let (mut victim, base) = spawn_binary_with(
        profiles.path(),
        "redis://127.0.0.1:1/0",
        &[
            ("SHOTFARM_REDIS__CLUSTER_NODES", &nodes),
            ("SHOTFARM_FARM__BROWSERS", "1"),
            ("SHOTFARM_LEDGER__HOLD_GRACE_MS", "2000"),
        ],
        None,
        &[],
    );
    wait_ready_at(&base, 1).await;
    let funded = fund(10);
    let key = client_with_key(&funded.key);
    // Four captures of a page that takes 20 s, in flight on the victim.
    let slow = capture_url(&base, &page("/slow/20000")) + "&timeout=25000";
    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            let (key, url) = (key.clone(), slow.clone());
            tokio::spawn(async move { key.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    let held = balance_becomes(&funded.account, Duration::from_secs(20), |b| {
        b.reserved == 4
    })
    .await;
    assert!(held, "four holds open on the victim");
    let _ = victim.kill();
    let _ = victim.wait();
    for request in in_flight {
        let answered = request.await.expect("task");
        assert!(answered.is_err(), "a killed daemon answers nothing");
    }
    // Holds live for timeout + slack + grace (~28 s); then the survivor's sweeper returns them.
    let back = balance_becomes(&funded.account, Duration::from_secs(60), |b| {
        b.available == 10 && b.reserved == 0
    })
    .await;
    assert!(back, "the held credits came back");
    let s = audited_in(&cluster_redis(), &funded.account).await;
    assert_eq!(s.balance.spent, 0, "nothing was charged");
    assert!(s.holds.is_empty());
    // The survivor serves the account as before.
    let r = key
        .get(capture_url(&survivor.url(""), &page("/plain")))
        .send()
        .await
        .expect("capture");
    assert_eq!((r.status().as_u16(), credits_header(&r)), (200, Some(9)));
}

#[tokio::test]
async fn a_webhook_delivered_to_every_host_credits_once() {
    let hosts = [daemon(), daemon()];
    let funded = fund(3);
    let order = OrderSpec::new(&funded.account, "pack_pro");
    let signer = polar_signer();
    // The same order, re-sent by Polar to a load balancer that spreads it over both hosts,
    // ten times each, at once.
    let deliveries = (0..20).map(|i| {
        let delivery = signer.deliver(&paid(&order));
        let base = hosts[i % 2].url("");
        async move { deliver_to(&base, &delivery).await }
    });
    let answers: Vec<(u16, Value)> = join_all(deliveries).await;
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    let s = audited_in(&cluster_redis(), &funded.account).await;
    assert_eq!(s.balance.available, 1003, "credited once");
    let purchases = s
        .transactions
        .iter()
        .filter(|t| t.kind.as_str() == "purchase")
        .count();
    assert_eq!(purchases, 1);
}

/// Async jobs on the cluster: the jobs stream (one slot of its own), each job's record and the
/// account's open set (the account's slot) and the workers' pooled connections (deadpool-redis'
/// cluster pool) all work there. Ten jobs over two daemons: each delivered once, charged once.
#[tokio::test]
async fn async_jobs_over_two_daemons_on_the_cluster_are_delivered_and_charged_once() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let daemons = [daemon(), daemon()];
    for d in &daemons {
        d.wait_ready(1).await;
    }
    let hooks = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hooks)
        .await;
    let funded = fund(10);
    let key = client_with_key(&funded.key);
    let mut jobs = Vec::new();
    for i in 0..10 {
        let base = daemons[i % 2].url("");
        let r = key
            .post(format!("{base}/api/v1/screenshot"))
            .json(&serde_json::json!({
                "url": page("/plain"), "width": 200, "height": 150, "async": true,
                "webhook_url": format!("{}/hook", hooks.uri()),
            }))
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.expect("json");
        jobs.push((base, body["id"].as_str().expect("id").to_string()));
    }
    for (base, id) in &jobs {
        let mut last = Value::Null;
        for _ in 0..600 {
            last = key
                .get(format!("{base}/api/v1/screenshots/{id}"))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            if last["webhook"] == "delivered" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(last["status"], "succeeded", "{last}");
        assert_eq!(last["webhook"], "delivered", "{last}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = hooks.received_requests().await.unwrap_or_default();
    let mut ids: Vec<&str> = received
        .iter()
        .filter_map(|r| r.headers.get("webhook-id")?.to_str().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(received.len(), 10, "each delivered once");
    assert_eq!(ids.len(), 10);
    let s = audited_in(&cluster_redis(), &funded.account).await;
    assert_eq!(
        (s.balance.spent, s.balance.reserved, s.balance.available),
        (10, 0, 0)
    );
}
