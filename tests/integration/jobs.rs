//! Async capture jobs (`async=true`), with real Redis and real Chromium: accepted at once,
//! run by a worker, delivered as a Standard Webhooks-signed POST (verified here with the
//! `standardwebhooks` crate) to a receiver on loopback, charged exactly once; a job whose
//! daemon is SIGKILLed mid-capture is taken over by the other daemon and delivered once; 100
//! jobs over two daemons are each delivered and charged once; and the refusals.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};
use shotfarm::ledger::keys::AccountKeys;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::redis_server::start_redis;
use crate::support::{
    audited, audited_on, client_with_key, page, provision, provision_on, ready, spawn_binary_on,
    ChildGuard, Daemon, Funded,
};

/// One daemon for the in-process tests: 2 workers whose claims go stale after 2 s.
fn daemon() -> &'static Daemon {
    static D: OnceLock<Daemon> = OnceLock::new();
    D.get_or_init(|| {
        Daemon::start(|c| {
            c.farm.browsers = 1;
            c.jobs.workers = 2;
            c.jobs.claim_idle_ms = 2_000;
        })
    })
}

/// A receiver answering 204 to every POST.
async fn receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    server
}

async fn submit(base: &str, key: &str, body: Value) -> (u16, Value) {
    let r = client_with_key(key)
        .post(format!("{base}/api/v1/screenshot"))
        .json(&body)
        .send()
        .await
        .expect("POST screenshot");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn job_status(base: &str, key: &str, id: &str) -> (u16, Value) {
    let r = client_with_key(key)
        .get(format!("{base}/api/v1/screenshots/{id}"))
        .send()
        .await
        .expect("GET job");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits (bounded) until the job is succeeded or failed, and its webhook settled.
async fn settled(base: &str, key: &str, id: &str, limit: Duration) -> Value {
    let until = std::time::Instant::now() + limit;
    loop {
        let (code, body) = job_status(base, key, id).await;
        assert_eq!(code, 200, "{body}");
        let done = matches!(body["status"].as_str(), Some("succeeded" | "failed"))
            && matches!(body["webhook"].as_str(), Some("delivered" | "gave_up"));
        if done {
            return body;
        }
        assert!(
            std::time::Instant::now() < until,
            "job {id} not settled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The account's webhook secret, as a customer reads it (`notificationSecret`).
async fn secret(base: &str, key: &str) -> String {
    let body: Value = client_with_key(key)
        .get(format!("{base}/api/v1/credits/auto-topup"))
        .send()
        .await
        .expect("auto-topup")
        .json()
        .await
        .expect("json");
    body["notificationSecret"]
        .as_str()
        .unwrap_or_else(|| panic!("no notificationSecret: {body}"))
        .to_string()
}

/// Every delivery verified with the `standardwebhooks` crate; bodies by `webhook-id`, with the
/// number of times each arrived.
fn verified(requests: &[Request], secret: &str) -> HashMap<String, (Value, usize)> {
    let verifier = standardwebhooks::Webhook::new(secret).expect("whsec_ secret");
    let mut by_id: HashMap<String, (Value, usize)> = HashMap::new();
    for r in requests {
        verifier
            .verify(&r.body, &r.headers)
            .unwrap_or_else(|e| panic!("a delivery does not verify: {e:?}"));
        let id = r
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .expect("webhook-id")
            .to_string();
        let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
        by_id.entry(id).or_insert((body, 0)).1 += 1;
    }
    by_id
}

async fn spent(account: &str) -> i64 {
    audited(account).await.balance.spent
}

#[tokio::test]
async fn a_job_is_accepted_delivered_signed_charged_once_and_serves_its_image() {
    let d = daemon();
    d.wait_ready(1).await;
    let base = d.url("");
    let hooks = receiver().await;
    let funded = provision(5);
    let (code, accepted) = submit(
        &base,
        &funded.key,
        json!({"url": page("/plain"), "async": true, "webhook_url": format!("{}/hooks/shot", hooks.uri())}),
    )
    .await;
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["id"].as_str().expect("id").to_string();
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["status_url"], format!("/api/v1/screenshots/{id}"));

    let done = settled(&base, &funded.key, &id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["webhook"], "delivered");
    assert!(done["finished_at"].is_string() && done["created_at"].is_string());
    let image = client_with_key(&funded.key)
        .get(format!("{base}/api/v1/screenshots/{id}/image"))
        .send()
        .await
        .expect("image");
    assert_eq!(image.status(), 200);
    assert_eq!(
        image
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    let bytes = image.bytes().await.expect("bytes");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    let secret = secret(&base, &funded.key).await;
    let deliveries = verified(
        &hooks.received_requests().await.unwrap_or_default(),
        &secret,
    );
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let (body, times) = &deliveries[&format!("msg_{id}")];
    assert_eq!(*times, 1);
    assert_eq!(body["type"], "screenshot.succeeded");
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["format"], "png");
    assert!(body["data"]["image_url"]
        .as_str()
        .is_some_and(|u| u.ends_with(&format!("/api/v1/screenshots/{id}/image"))));
    assert_eq!(spent(&funded.account).await, 1, "charged exactly once");

    // A page that fails: the job fails with the synchronous capture's code, free.
    let failing = page("/no-such-page");
    let sync = client_with_key(&funded.key)
        .post(d.url("/api/v1/screenshot"))
        .json(&json!({"url": failing}))
        .send()
        .await
        .expect("sync capture");
    let sync_status = sync.status().as_u16();
    let sync_body: Value = sync.json().await.expect("error body");
    assert!(sync_status >= 400, "{sync_body}");
    let (code, accepted) = submit(
        &base,
        &funded.key,
        json!({"url": failing, "async": true, "webhook_url": format!("{}/hooks/shot", hooks.uri())}),
    )
    .await;
    assert_eq!(code, 202, "{accepted}");
    let failed_id = accepted["id"].as_str().expect("id").to_string();
    let done = settled(&base, &funded.key, &failed_id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(
        done["error"]["code"], sync_body["error"]["code"],
        "{done} vs {sync_body}"
    );
    assert!(done.get("image_url").is_none());
    let image = client_with_key(&funded.key)
        .get(format!("{base}/api/v1/screenshots/{failed_id}/image"))
        .send()
        .await
        .expect("image");
    assert_eq!(image.status(), 404);
    let deliveries = verified(
        &hooks.received_requests().await.unwrap_or_default(),
        &secret,
    );
    let (body, times) = &deliveries[&format!("msg_{failed_id}")];
    assert_eq!(*times, 1);
    assert_eq!(body["type"], "screenshot.failed");
    assert_eq!(body["data"]["error"]["code"], sync_body["error"]["code"]);
    assert_eq!(spent(&funded.account).await, 1, "the failure was free");
}

#[tokio::test]
async fn refusals_bad_webhooks_combinations_no_credit_and_other_accounts_jobs() {
    let d = daemon();
    let base = d.url("");
    let funded = provision(3);
    let url = page("/plain");
    let cases = [
        (
            json!({"url": url, "async": true}),
            "webhook_url",
            "invalid_parameter",
        ),
        (
            json!({"url": url, "async": true, "webhook_url": "not a url"}),
            "webhook_url",
            "invalid_parameter",
        ),
        (
            json!({"url": url, "async": true, "webhook_url": "ftp://example.com/x"}),
            "webhook_url",
            "invalid_parameter",
        ),
        (
            json!({"url": url, "webhook_url": "https://example.com/x"}),
            "webhook_url",
            "invalid_parameter",
        ),
        (
            json!({"url": url, "async": true, "webhook_url": "http://169.254.169.254/hook"}),
            "webhook_url",
            "url_not_allowed",
        ),
        (
            json!({"url": url, "async": true, "webhook_url": "http://10.1.2.3/hook"}),
            "webhook_url",
            "url_not_allowed",
        ),
        (
            json!({"url": url, "async": true, "cache": true, "webhook_url": "http://127.0.0.1:9/h"}),
            "cache",
            "invalid_parameter",
        ),
        (
            json!({"url": url, "async": true, "store": true, "webhook_url": "http://127.0.0.1:9/h"}),
            "store",
            "invalid_parameter",
        ),
        (
            json!({"url": "http://10.9.9.9/", "async": true, "webhook_url": "http://127.0.0.1:9/h"}),
            "url",
            "url_not_allowed",
        ),
    ];
    for (body, field, code) in cases {
        let (status, answer) = submit(&base, &funded.key, body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], code, "{body} → {answer}");
        assert!(answer["request_id"].is_string(), "{answer}");
        let mut fields: Vec<&str> = answer["error"]["details"]
            .as_array()
            .map(|d| d.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        fields.extend(answer["error"]["field"].as_str());
        assert!(fields.contains(&field), "{body} → {answer}");
    }
    // An account without credit: 402, nothing queued.
    let broke = provision(0);
    let (status, answer) = submit(
        &base,
        &broke.key,
        json!({"url": url, "async": true, "webhook_url": "http://127.0.0.1:9/h"}),
    )
    .await;
    assert_eq!(status, 402, "{answer}");
    // Another account's job, and ids that are no job: 404 with the error body.
    let (status, accepted) = submit(
        &base,
        &funded.key,
        json!({"url": url, "async": true, "webhook_url": "http://127.0.0.1:9/h"}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().expect("id");
    let other = provision(1);
    for (key, job) in [
        (&other.key, id.to_string()),
        (
            &funded.key,
            "job_00000000000000000000000000000000".to_string(),
        ),
        (&funded.key, "../../etc".to_string()),
    ] {
        let (status, answer) = job_status(&base, key, &job).await;
        assert_eq!(status, 404, "{job}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found");
        let image = client_with_key(key)
            .get(format!("{base}/api/v1/screenshots/{job}/image"))
            .send()
            .await
            .expect("image");
        assert_eq!(image.status(), 404);
    }
    let (status, _) = job_status(&base, &funded.key, id).await;
    assert_eq!(status, 200);
    audited(&funded.account).await;
}

/// Two daemon binaries on the Redis at `redis` (the test's own: no other test's daemon takes
/// its jobs) sharing the jobs stream, with quick takeovers.
fn two_daemons(dirs: &[tempfile::TempDir; 2], redis: &str) -> [(ChildGuard, String); 2] {
    let env = [
        ("SHOTFARM_FARM__BROWSERS", "1"),
        ("SHOTFARM_JOBS__WORKERS", "3"),
        ("SHOTFARM_JOBS__CLAIM_IDLE_MS", "1500"),
        // A dead run's hold is left to expire (a takeover never releases it): soon, here.
        ("SHOTFARM_LEDGER__HOLD_GRACE_MS", "2000"),
        ("SHOTFARM_LEDGER__SWEEP_INTERVAL_MS", "200"),
        ("SHOTFARM_NOTIFICATIONS__FIRST_RETRY_MS", "100"),
        ("SHOTFARM_NOTIFICATIONS__MAX_RETRY_MS", "400"),
    ];
    // Each daemon's log beside its profiles, shown if it never gets ready.
    [0, 1].map(|i| {
        let log = dirs[i].path().join("daemon.log");
        spawn_binary_on(dirs[i].path(), redis, &env, Some(&log))
    })
}

/// Which daemon's worker runs `job` now (its consumer name starts with the daemon's pid).
async fn runner(redis: &str, account: &str, job: &str) -> Option<u32> {
    let client = redis::Client::open(redis).expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let worker: Option<String> = redis::cmd("HGET")
        .arg(AccountKeys::new(account).job(job))
        .arg("worker")
        .query_async(&mut conn)
        .await
        .ok()
        .flatten();
    worker?.split('-').next()?.parse().ok()
}

/// Submits a job of a page that takes 4 s — longer than the claim's idle limit, so only the
/// heartbeat keeps the job with its worker — and waits until a worker runs it: its id and the
/// pid of the daemon running it.
async fn slow_job(base: &str, redis: &str, funded: &Funded, hooks: &MockServer) -> (String, u32) {
    let (code, accepted) = submit(
        base,
        &funded.key,
        json!({"url": page("/slow/4000"), "async": true, "timeout": 8000,
               "webhook_url": format!("{}/hooks/shot", hooks.uri())}),
    )
    .await;
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["id"].as_str().expect("id").to_string();
    for _ in 0..100 {
        if let Some(pid) = runner(redis, &funded.account, &id).await {
            return (id, pid);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no worker took the job");
}

#[tokio::test]
async fn a_job_survives_the_sigkill_of_the_daemon_running_it_and_is_delivered_and_charged_once() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let redis = start_redis();
    let [mut a, mut b] = two_daemons(&dirs, &redis.url);
    ready(&a.1, &dirs[0]).await;
    ready(&b.1, &dirs[1]).await;
    let hooks = receiver().await;
    let funded = provision_on(&redis.url, 5);
    let (id, pid) = slow_job(&a.1, &redis.url, &funded, &hooks).await;
    // Well into the capture, the daemon running it dies.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (killed, survivor) = if pid == a.0 .0.id() {
        (&mut a, &b)
    } else {
        assert_eq!(pid, b.0 .0.id(), "the runner is one of the two daemons");
        (&mut b, &a)
    };
    assert!(testkit::process::signal(killed.0 .0.id(), libc::SIGKILL));
    let _ = killed.0 .0.wait();
    let done = settled(&survivor.1, &funded.key, &id, Duration::from_secs(90)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["webhook"], "delivered");
    assert_ne!(
        runner(&redis.url, &funded.account, &id).await,
        Some(pid),
        "taken over"
    );
    // Give a wrongly duplicated delivery time to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secret = secret(&survivor.1, &funded.key).await;
    let requests = hooks.received_requests().await.unwrap_or_default();
    let deliveries = verified(&requests, &secret);
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(requests.len(), 1, "delivered once");
    assert_eq!(
        deliveries[&format!("msg_{id}")].0["type"],
        "screenshot.succeeded"
    );
    let snapshot = audited_on(&redis.url, &funded.account).await;
    assert_eq!(snapshot.balance.spent, 1, "charged once");
    assert_eq!(snapshot.balance.reserved, 0, "no hold left open");
}

/// A worker that stalls (its daemon SIGSTOPped past the claim's idle limit) is taken over, but
/// its hold is left alone: when it resumes and commits, the image it delivers is charged. (A
/// takeover that released the hold let that run deliver its image free.)
#[tokio::test]
async fn a_stalled_worker_taken_over_still_charges_the_image_it_delivers() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let redis = start_redis();
    let [a, b] = two_daemons(&dirs, &redis.url);
    ready(&a.1, &dirs[0]).await;
    ready(&b.1, &dirs[1]).await;
    let hooks = receiver().await;
    let funded = provision_on(&redis.url, 5);
    let (id, pid) = slow_job(&a.1, &redis.url, &funded, &hooks).await;
    let survivor = if pid == a.0 .0.id() { &b } else { &a };
    // Into the capture, the daemon running it stalls past the idle limit (the other takes the
    // job over meanwhile), then resumes while its Chromium finishes the page.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // (The other daemon's workers look for stale entries between blocking reads of up to 2 s:
    // 5 s leaves time for the takeover.)
    assert!(testkit::process::signal(pid, libc::SIGSTOP));
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    assert!(testkit::process::signal(pid, libc::SIGCONT));
    let done = settled(&survivor.1, &funded.key, &id, Duration::from_secs(90)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["webhook"], "delivered");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secret = secret(&survivor.1, &funded.key).await;
    let requests = hooks.received_requests().await.unwrap_or_default();
    assert_eq!(verified(&requests, &secret).len(), 1, "delivered once");
    let snapshot = audited_on(&redis.url, &funded.account).await;
    assert_eq!(
        snapshot.balance.spent, 1,
        "the delivered image is charged, once"
    );
    assert_eq!(snapshot.balance.reserved, 0, "no hold left open");
}

#[tokio::test]
async fn a_hundred_jobs_over_two_daemons_are_each_delivered_and_charged_exactly_once() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let redis = start_redis();
    let daemons = two_daemons(&dirs, &redis.url);
    ready(&daemons[0].1, &dirs[0]).await;
    ready(&daemons[1].1, &dirs[1]).await;
    let hooks = receiver().await;
    let funded = provision_on(&redis.url, 150);
    let hook = format!("{}/hooks/batch", hooks.uri());
    let mut ids = Vec::new();
    for n in 0..100 {
        let base = &daemons[n % 2].1;
        let (code, accepted) = submit(
            base,
            &funded.key,
            json!({"url": page("/plain"), "async": true, "webhook_url": hook, "width": 640 + n}),
        )
        .await;
        assert_eq!(code, 202, "{accepted}");
        ids.push(accepted["id"].as_str().expect("id").to_string());
    }
    for (n, id) in ids.iter().enumerate() {
        let done = settled(&daemons[n % 2].1, &funded.key, id, Duration::from_secs(240)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["width"], 640 + n as u64, "{done}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let secret = secret(&daemons[0].1, &funded.key).await;
    let requests = hooks.received_requests().await.unwrap_or_default();
    let deliveries = verified(&requests, &secret);
    assert_eq!(deliveries.len(), 100);
    assert_eq!(requests.len(), 100, "each delivered once");
    for id in &ids {
        assert_eq!(deliveries[&format!("msg_{id}")].1, 1);
    }
    let snapshot = audited_on(&redis.url, &funded.account).await;
    assert_eq!(snapshot.balance.spent, 100, "each charged once");
    assert_eq!(snapshot.balance.reserved, 0);
    assert_eq!(snapshot.balance.available, 50);
}

#[tokio::test]
async fn an_account_cannot_queue_past_its_cap() {
    // A daemon on a Redis of its own that runs no jobs: what is queued stays queued.
    let redis = start_redis();
    let url = redis.url.clone();
    let d = Daemon::start(move |c| {
        c.farm.browsers = 1;
        c.redis.url = url;
        c.jobs.workers = 0;
        c.jobs.max_queued_per_account = 2;
    });
    let base = d.url("");
    let funded = provision_on(&redis.url, 10);
    let body = json!({"url": page("/plain"), "async": true, "webhook_url": "http://127.0.0.1:9/h"});
    for _ in 0..2 {
        let (status, answer) = submit(&base, &funded.key, body.clone()).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "queued");
    }
    let (status, answer) = submit(&base, &funded.key, body.clone()).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "too_many_jobs");
    // Another account is not held back by this one's jobs.
    let other = provision_on(&redis.url, 1);
    let (status, answer) = submit(&base, &other.key, body).await;
    assert_eq!(status, 202, "{answer}");
    let snapshot = audited_on(&redis.url, &funded.account).await;
    assert_eq!(
        (snapshot.balance.spent, snapshot.balance.reserved),
        (0, 0),
        "nothing charged or held while queued"
    );
}
