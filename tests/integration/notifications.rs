//! Low-balance notifications, against the payments daemon and a receiver on loopback (a
//! wiremock server standing in for the customer's endpoint): one signed Standard Webhooks
//! message per fall below the threshold, retried until accepted or given up, with signatures
//! checked here by our own HMAC; and notification URLs the egress policy refuses. Pending
//! notifications live in Redis: daemon binaries SIGKILLed mid-retries (on a single Redis and on
//! the Redis Cluster) leave them to another daemon, which delivers each once under its one
//! `webhook-id` (verified with the `standardwebhooks` crate); a restart with nothing pending
//! sends nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use shotfarm::config::RedisConfig;
use shotfarm::ledger::keys::AccountKeys;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::payments::{
    capture, code, customer, daemon, deliver, hmac_sha256, json_of, paid, polar_signer, OrderSpec,
};
use crate::redis_server::{cluster_nodes, cluster_nodes_toml, start_redis};
use crate::support::{
    audited_in, client_with_key, credits_header, enc, metric_value, page, provision_in, ready,
    spawn_binary_on, ChildGuard, Funded,
};

async fn put_settings(session: &str, body: Value) -> (u16, Value) {
    json_of(
        reqwest::Client::new()
            .put(daemon().url("/api/v1/credits/auto-topup"))
            .header("cookie", format!("session={session}"))
            .json(&body)
            .send()
            .await
            .expect("PUT auto-topup"),
    )
    .await
}

async fn get_json(session: &str, path: &str) -> Value {
    let (status, body) = json_of(
        reqwest::Client::new()
            .get(daemon().url(path))
            .header("cookie", format!("session={session}"))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn header<'a>(r: &'a Request, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("the notification has no {name} header"))
}

/// Checks a delivery's Standard Webhooks signature with the account's `whsec_` secret, computed
/// here; returns its body.
fn verified(r: &Request, secret: &str) -> Value {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 key");
    let id = header(r, "webhook-id");
    let timestamp = header(r, "webhook-timestamp");
    let signed = [
        id.as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        r.body.as_slice(),
    ]
    .concat();
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, &signed))
    );
    assert!(
        header(r, "webhook-signature")
            .split(' ')
            .any(|s| s == expected),
        "signature of {id} does not verify"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let sent: i64 = timestamp.parse().expect("numeric timestamp");
    assert!((now - sent).abs() < 120, "timestamp {sent} vs now {now}");
    assert_eq!(header(r, "content-type"), "application/json");
    serde_json::from_slice(&r.body).expect("JSON body")
}

async fn received(receiver: &MockServer) -> Vec<Request> {
    receiver.received_requests().await.unwrap_or_default()
}

/// Waits (bounded) until `receiver` got at least `n` requests, then returns them all.
async fn at_least(receiver: &MockServer, n: usize) -> Vec<Request> {
    for _ in 0..300 {
        let got = received(receiver).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the receiver got {} requests, expected {n}",
        received(receiver).await.len()
    );
}

#[tokio::test]
async fn each_fall_below_the_threshold_sends_one_signed_notification_retried_until_accepted() {
    let receiver = MockServer::start().await;
    // The first attempt fails; every later one is accepted.
    Mock::given(method("POST"))
        .and(path("/hooks/low"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks/low"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let c = customer(4).await;
    let hook = format!("{}/hooks/low", receiver.uri());
    let (status, settings) = put_settings(
        &c.session,
        json!({"enabled": true, "threshold": 3, "packId": "pack_pro", "notificationUrl": hook}),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["notificationUrl"], hook.as_str());
    let secret = settings["notificationSecret"]
        .as_str()
        .expect("a secret once a URL is set")
        .to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );

    // 4 → 3 is not below 3; 3 → 2 crosses; 2 → 1 is low but crosses nothing.
    let key = client_with_key(&c.funded.key);
    let first = capture(&key).await;
    assert_eq!(
        (credits_header(&first), first.headers().get("x-credits-low")),
        (Some(3), None)
    );
    let crossing = capture(&key).await;
    assert_eq!(credits_header(&crossing), Some(2));
    assert_eq!(crossing.headers()["x-credits-low"], "true");
    let got = at_least(&receiver, 2).await;
    assert_eq!(credits_header(&capture(&key).await), Some(1));

    // The failed attempt and its retry: one message (same webhook-id), each signed anew.
    let (a, b) = (verified(&got[0], &secret), verified(&got[1], &secret));
    assert_eq!(header(&got[0], "webhook-id"), header(&got[1], "webhook-id"));
    assert!(header(&got[0], "webhook-id").starts_with("msg_"));
    assert_eq!(a, b, "a retry re-sends the same message");
    assert_eq!(a["type"], "credits.low");
    let data = &a["data"];
    assert_eq!(data["accountId"], c.funded.account.as_str());
    assert_eq!(
        (data["balance"].as_i64(), data["threshold"].as_i64()),
        (Some(2), Some(3))
    );
    assert_eq!(data["suggestedPack"]["id"], "pack_pro");
    assert_eq!(data["suggestedPack"]["credits"], 1000);
    assert_eq!(data["suggestedPack"]["priceCents"], 3500);
    assert_eq!(
        data["purchaseUrl"],
        "https://shots.example/dashboard/credits"
    );

    // A purchase lifts the balance to 101; with the threshold at 101 the next charge crosses
    // again: a second message, with an id of its own.
    let (status, _) =
        deliver(&polar_signer().deliver(&paid(&OrderSpec::new(&c.funded.account, "pack_starter"))))
            .await;
    assert_eq!(status, 200);
    let (status, _) = put_settings(&c.session, json!({"threshold": 101})).await;
    assert_eq!(status, 200);
    assert_eq!(credits_header(&capture(&key).await), Some(100));
    let got = at_least(&receiver, 3).await;
    // Nothing else is on its way (retries here take 0.1–0.4 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = received(&receiver).await;
    assert_eq!(
        all.len(),
        3,
        "2 deliveries of the first crossing, 1 of the second"
    );
    let second = verified(&got[2], &secret);
    assert_ne!(header(&got[2], "webhook-id"), header(&got[0], "webhook-id"));
    assert_eq!(
        (
            second["data"]["balance"].as_i64(),
            second["data"]["threshold"].as_i64()
        ),
        (Some(100), Some(101))
    );
}

#[tokio::test]
async fn a_notification_nobody_accepts_is_retried_then_given_up() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&receiver)
        .await;
    let c = customer(2).await;
    let (status, settings) = put_settings(
        &c.session,
        json!({"enabled": true, "threshold": 2, "packId": "pack_starter",
               "notificationUrl": format!("{}/down", receiver.uri())}),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    let gave_up_before = metric_value(
        &daemon().metrics_text().await,
        "shotfarm_notifications_total{outcome=\"gave_up\"}",
    );
    let key = client_with_key(&c.funded.key);
    let crossing = capture(&key).await;
    assert_eq!(crossing.headers()["x-credits-low"], "true");
    // The default 8 attempts, every one with the same id.
    let got = at_least(&receiver, 8).await;
    let ids: std::collections::HashSet<&str> =
        got.iter().map(|r| header(r, "webhook-id")).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let mut gave_up = gave_up_before;
    for _ in 0..50 {
        gave_up = metric_value(
            &daemon().metrics_text().await,
            "shotfarm_notifications_total{outcome=\"gave_up\"}",
        );
        if gave_up > gave_up_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gave_up > gave_up_before,
        "gave_up {gave_up_before} → {gave_up}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        received(&receiver).await.len(),
        8,
        "no attempt after giving up"
    );
}

#[tokio::test]
async fn notification_urls_are_checked_and_their_secret_lives_as_long_as_the_url() {
    let c = customer(5).await;
    // Inside the network (the test daemons allow only loopback): refused, nothing stored.
    for inward in [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "https://[::ffff:192.168.1.1]/hook",
        "http://0x0a000001/hook",
    ] {
        let (status, body) = put_settings(&c.session, json!({"notificationUrl": inward})).await;
        assert_eq!(
            (status, code(&body)),
            (400, Some("url_not_allowed")),
            "{inward}: {body}"
        );
        assert_eq!(body["error"]["field"], "notificationUrl");
    }
    for bad in [
        "ftp://example.com/hook",
        "not a url",
        "/relative",
        "mailto:a@b.c",
    ] {
        let (status, body) = put_settings(&c.session, json!({"notificationUrl": bad})).await;
        assert_eq!(
            (status, code(&body)),
            (400, Some("invalid_parameter")),
            "{bad}: {body}"
        );
    }
    // With another problem, every problem is named.
    let (status, body) = put_settings(
        &c.session,
        json!({"threshold": 0, "notificationUrl": "http://10.0.0.1/"}),
    )
    .await;
    assert_eq!((status, code(&body)), (400, Some("invalid_parameter")));
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(fields, ["threshold", "notificationUrl"]);
    let shown = get_json(&c.session, "/api/v1/credits/auto-topup").await;
    assert_eq!(
        (&shown["notificationUrl"], &shown["notificationSecret"]),
        (&Value::Null, &Value::Null),
        "nothing stored: {shown}"
    );

    // Set: a secret is made; changing the URL keeps it; clearing drops both; setting again
    // makes a new one.
    let (status, set) = put_settings(
        &c.session,
        json!({"notificationUrl": "http://127.0.0.1:9/a"}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    let first = set["notificationSecret"]
        .as_str()
        .expect("secret")
        .to_string();
    let (_, moved) = put_settings(
        &c.session,
        json!({"notificationUrl": "http://127.0.0.1:9/b"}),
    )
    .await;
    assert_eq!(moved["notificationUrl"], "http://127.0.0.1:9/b");
    assert_eq!(moved["notificationSecret"], first.as_str());
    // The balance endpoint shows the URL, never the secret.
    let credits = get_json(&c.session, "/api/v1/credits").await;
    assert_eq!(
        credits["autoTopup"]["notificationUrl"],
        "http://127.0.0.1:9/b"
    );
    assert!(
        !credits.to_string().contains(&first),
        "the secret leaks: {credits}"
    );
    let (_, cleared) = put_settings(&c.session, json!({"notificationUrl": null})).await;
    assert_eq!(
        (&cleared["notificationUrl"], &cleared["notificationSecret"]),
        (&Value::Null, &Value::Null)
    );
    let (_, again) = put_settings(
        &c.session,
        json!({"notificationUrl": "http://127.0.0.1:9/c"}),
    )
    .await;
    let renewed = again["notificationSecret"].as_str().expect("secret");
    assert_ne!(renewed, first, "a cleared secret is not reused");
    // Other settings were never touched.
    assert_eq!(
        (&again["enabled"], &again["threshold"]),
        (&json!(false), &json!(0))
    );
}

// Pending notifications in Redis: a restart or a crash delays a notification, never loses or
// doubles it. Daemon binaries on a Redis of the test's own (or the shared cluster), so no other
// test's daemon delivers these notifications and SIGKILL is a real crash.

/// A receiver that answers 503 until `open` is set, then 204; it notes each `webhook-id` it
/// accepted.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<String>>>,
}

impl wiremock::Respond for Gate {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        if !self.open.load(Ordering::SeqCst) {
            return ResponseTemplate::new(503);
        }
        let id = r
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.accepted.lock().expect("accepted ids").push(id);
        ResponseTemplate::new(204)
    }
}

impl Gate {
    async fn mount(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hooks/low"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().expect("accepted ids").clone()
    }
}

/// Where the daemons of a durability test keep their ledger: a Redis of the test's own, or the
/// run's shared Redis Cluster.
struct Ledger {
    redis: RedisConfig,
    /// The daemons' environment naming it.
    env: Vec<(&'static str, String)>,
}

impl Ledger {
    fn single(url: &str) -> Ledger {
        Ledger {
            redis: RedisConfig {
                url: url.to_string(),
                ..Default::default()
            },
            env: vec![("SHOTFARM_REDIS__URL", url.to_string())],
        }
    }

    fn cluster() -> Ledger {
        let nodes = cluster_nodes_toml();
        Ledger {
            redis: RedisConfig {
                cluster_nodes: cluster_nodes(),
                ..Default::default()
            },
            env: vec![("SHOTFARM_REDIS__CLUSTER_NODES", nodes)],
        }
    }

    /// A daemon binary on this ledger, with quick retries (never given up here), a 3 s lease
    /// and 200 ms polls; its log in `dir`.
    fn spawn(&self, dir: &tempfile::TempDir) -> (ChildGuard, String) {
        let mut env: Vec<(&str, &str)> = vec![
            ("SHOTFARM_FARM__BROWSERS", "1"),
            ("SHOTFARM_AUTH__PUBLIC_URL", "https://shots.example"),
            ("SHOTFARM_NOTIFICATIONS__ATTEMPTS", "1000"),
            ("SHOTFARM_NOTIFICATIONS__FIRST_RETRY_MS", "200"),
            ("SHOTFARM_NOTIFICATIONS__MAX_RETRY_MS", "400"),
            ("SHOTFARM_NOTIFICATIONS__TIMEOUT_MS", "1000"),
            ("SHOTFARM_NOTIFICATIONS__LEASE_MS", "3000"),
            ("SHOTFARM_NOTIFICATIONS__POLL_MS", "200"),
        ];
        env.extend(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let log = dir.path().join("daemon.log");
        // A cluster daemon is told no single URL (the env's node list wins).
        let url = if self.redis.cluster_nodes.is_empty() {
            self.redis.url.as_str()
        } else {
            "redis://127.0.0.1:1/0"
        };
        spawn_binary_on(dir.path(), url, &env, Some(&log))
    }

    fn customer(&self, credits: i64) -> (Funded, String) {
        let email = format!("n{}@test.example", uuid::Uuid::new_v4().simple());
        let config = shotfarm::config::Config {
            redis: self.redis.clone(),
            ..Default::default()
        };
        (provision_in(config, &email, credits), email)
    }

    /// The account's pending notification (`id` → its webhook-id) and whether its shard's due
    /// set lists the account, read straight from Redis.
    async fn pending(&self, account: &str) -> (Option<String>, bool) {
        let handle = shotfarm::ledger::RedisHandle::new(&self.redis).expect("redis config");
        let mut conn = handle.connect().await.expect("redis connection");
        let k = AccountKeys::new(account);
        let id: Option<String> = redis::cmd("HGET")
            .arg(k.low_balance())
            .arg("id")
            .query_async(&mut conn)
            .await
            .expect("HGET");
        let due: Option<f64> = redis::cmd("ZSCORE")
            .arg(k.low_balance_due())
            .arg(account)
            .query_async(&mut conn)
            .await
            .expect("ZSCORE");
        (id, due.is_some())
    }
}

/// Logs in at `base` as `email` and sets auto top-up: `threshold`, `pack_pro`, `url`.
/// Returns the account's `whsec_` secret.
async fn notify_below(base: &str, email: &str, threshold: i64, url: &str) -> String {
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200, "login as {email}");
    let session = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let (status, settings) = json_of(
        http.put(format!("{base}/api/v1/credits/auto-topup"))
            .header("cookie", session)
            .json(
                &json!({"enabled": true, "threshold": threshold, "packId": "pack_pro",
                          "notificationUrl": url}),
            )
            .send()
            .await
            .expect("PUT auto-topup"),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    settings["notificationSecret"]
        .as_str()
        .expect("a secret once a URL is set")
        .to_string()
}

/// One capture at `base` (the fixture page), which must be an image; its balance header.
async fn capture_at(base: &str, key: &str) -> reqwest::Response {
    let url = format!(
        "{base}/api/v1/screenshot?url={}&width=200&height=150",
        enc(&page("/plain"))
    );
    let r = client_with_key(key).get(url).send().await.expect("capture");
    assert_eq!(r.status(), 200, "the capture must succeed");
    r
}

/// Polls (bounded) until `done` returns something.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The crash test on `ledger`: a crossing charged by a daemon whose receiver refuses, the daemon
/// SIGKILLed mid-retries, another daemon started on the same Redis delivers it once the
/// receiver accepts: one webhook-id (`msg_` + the charge's hold id), accepted once.
async fn a_crossing_outlives_the_sigkill_of_its_daemon(ledger: Ledger) {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let gate = Gate::default();
    let receiver = gate.mount().await;
    let hook = format!("{}/hooks/low", receiver.uri());
    let (mut first, base) = ledger.spawn(&dirs[0]);
    ready(&base, &dirs[0]).await;
    let (funded, email) = ledger.customer(3);
    let secret = notify_below(&base, &email, 2, &hook).await;

    // 3 → 2 is not below 2; 2 → 1 crosses.
    let r = capture_at(&base, &funded.key).await;
    assert_eq!(credits_header(&r), Some(2));
    let crossing = capture_at(&base, &funded.key).await;
    assert_eq!(
        (
            credits_header(&crossing),
            crossing.headers().get("x-credits-low").cloned()
        ),
        (
            Some(1),
            Some(reqwest::header::HeaderValue::from_static("true"))
        )
    );
    // The charge's own transaction names the message: msg_<hold id>.
    let snapshot = audited_in(&ledger.redis, &funded.account).await;
    let charge = snapshot
        .transactions
        .first()
        .expect("the crossing's usage entry");
    let expected_id = format!("msg_{}", charge.id);
    // Pending in Redis before anything was delivered (the capture was answered).
    let (pending, due) = ledger.pending(&funded.account).await;
    assert_eq!(pending.as_deref(), Some(expected_id.as_str()));
    assert!(due, "the shard's due set lists the account");

    // The first daemon tries (and is refused) a few times, then dies without a word.
    eventually(
        "three refused attempts",
        Duration::from_secs(30),
        || async {
            let got = received(&receiver).await;
            (got.len() >= 3).then_some(())
        },
    )
    .await;
    assert!(testkit::process::signal(first.0.id(), libc::SIGKILL));
    let _ = first.0.wait();
    let refused = received(&receiver).await.len();
    assert!(gate.accepted().is_empty());
    let (pending, _) = ledger.pending(&funded.account).await;
    assert_eq!(
        pending.as_deref(),
        Some(expected_id.as_str()),
        "still pending after the crash"
    );

    // The receiver comes back; a new daemon on the same Redis delivers the notification.
    gate.open.store(true, Ordering::SeqCst);
    let (_second, second_base) = ledger.spawn(&dirs[1]);
    ready(&second_base, &dirs[1]).await;
    eventually("the delivery", Duration::from_secs(60), || async {
        (!gate.accepted().is_empty()).then_some(())
    })
    .await;
    eventually("the record settled", Duration::from_secs(10), || async {
        let (id, due) = ledger.pending(&funded.account).await;
        (id.is_none() && !due).then_some(())
    })
    .await;
    // Give a wrongly repeated delivery time to show up (retries here are 0.2–0.4 s apart).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = received(&receiver).await;
    assert!(requests.len() > refused, "the new daemon sent it");
    let verifier = standardwebhooks::Webhook::new(&secret).expect("whsec_ secret");
    let mut ids = std::collections::HashSet::new();
    for r in &requests {
        verifier
            .verify(&r.body, &r.headers)
            .unwrap_or_else(|e| panic!("a delivery does not verify: {e:?}"));
        ids.insert(header(r, "webhook-id").to_string());
        let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
        assert_eq!(body["type"], "credits.low");
        assert_eq!(body["data"]["accountId"], funded.account.as_str());
        assert_eq!(
            (
                body["data"]["balance"].as_i64(),
                body["data"]["threshold"].as_i64()
            ),
            (Some(1), Some(2))
        );
        assert_eq!(body["data"]["suggestedPack"]["id"], "pack_pro");
    }
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        vec![expected_id.clone()],
        "one crossing, one webhook-id, before and after the crash"
    );
    assert_eq!(gate.accepted(), vec![expected_id], "accepted exactly once");
    // Every attempt sent the same message (its timestamp is the crossing's).
    let bodies: std::collections::HashSet<&[u8]> =
        requests.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies.len(), 1, "one body for every attempt");
    let snapshot = audited_in(&ledger.redis, &funded.account).await;
    assert_eq!(
        (
            snapshot.balance.spent,
            snapshot.balance.available,
            snapshot.balance.reserved
        ),
        (2, 1, 0),
        "two captures charged once each, no hold left"
    );
}

#[tokio::test]
async fn a_low_balance_notification_outlives_the_sigkill_of_its_daemon_and_is_delivered_once() {
    let redis = start_redis();
    a_crossing_outlives_the_sigkill_of_its_daemon(Ledger::single(&redis.url)).await;
}

#[tokio::test]
async fn on_the_cluster_a_low_balance_notification_outlives_the_sigkill_of_its_daemon() {
    a_crossing_outlives_the_sigkill_of_its_daemon(Ledger::cluster()).await;
}

#[tokio::test]
async fn a_restart_with_nothing_pending_sends_nothing() {
    let redis = start_redis();
    let ledger = Ledger::single(&redis.url);
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let gate = Gate::default();
    gate.open.store(true, Ordering::SeqCst);
    let receiver = gate.mount().await;
    let hook = format!("{}/hooks/low", receiver.uri());
    let (mut first, base) = ledger.spawn(&dirs[0]);
    ready(&base, &dirs[0]).await;
    // One account whose crossing is delivered before the restart, one that never crosses.
    let (crossed, crossed_email) = ledger.customer(2);
    let (calm, calm_email) = ledger.customer(5);
    notify_below(&base, &crossed_email, 2, &hook).await;
    notify_below(&base, &calm_email, 2, &hook).await;
    assert_eq!(
        credits_header(&capture_at(&base, &crossed.key).await),
        Some(1)
    );
    assert_eq!(credits_header(&capture_at(&base, &calm.key).await), Some(4));
    eventually("the one delivery", Duration::from_secs(30), || async {
        (gate.accepted().len() == 1).then_some(())
    })
    .await;
    eventually("the record settled", Duration::from_secs(10), || async {
        let (id, due) = ledger.pending(&crossed.account).await;
        (id.is_none() && !due).then_some(())
    })
    .await;
    assert_eq!(ledger.pending(&calm.account).await, (None, false));

    // A crash and a new daemon: nothing is pending, so nothing is sent.
    assert!(testkit::process::signal(first.0.id(), libc::SIGKILL));
    let _ = first.0.wait();
    let (_second, second_base) = ledger.spawn(&dirs[1]);
    ready(&second_base, &dirs[1]).await;
    // Many polls of the new daemon (every 200 ms).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = received(&receiver).await;
    assert_eq!(requests.len(), 1, "only the delivery before the restart");
    assert_eq!(header(&requests[0], "webhook-id"), gate.accepted()[0]);
    // The new daemon charges on as before, below the threshold: no new crossing.
    assert_eq!(
        credits_header(&capture_at(&second_base, &crossed.key).await),
        Some(0)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        received(&receiver).await.len(),
        1,
        "low, but no new crossing"
    );
    for account in [&crossed.account, &calm.account] {
        assert_eq!(ledger.pending(account).await, (None, false));
    }
    let s = audited_in(&ledger.redis, &crossed.account).await;
    assert_eq!((s.balance.spent, s.balance.available), (2, 0));
    let s = audited_in(&ledger.redis, &calm.account).await;
    assert_eq!((s.balance.spent, s.balance.available), (1, 4));
}
