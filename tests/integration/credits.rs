//! Credits around captures, against the real daemon, real Chromium and a private Redis:
//! accounts and sessions, API keys, the contract's endpoints, and captures that are charged
//! exactly when they deliver an image.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::redis_server::start_redis;
use crate::support::{
    audited, audited_on, client_with_key, credits_header, enc, free_port, on_own_redis, page,
    provision, provision_on, shared, Daemon,
};

fn capture_url(query: &str) -> String {
    shared().url(&format!("/api/v1/screenshot?{query}"))
}

fn plain() -> String {
    format!("url={}&width=200&height=150", enc(&page("/plain")))
}

/// A fresh email for sign-up tests.
fn email() -> String {
    format!("u{}@Example.com", uuid::Uuid::new_v4().simple())
}

/// The `session` cookie a response sets.
fn session_from(response: &reqwest::Response) -> String {
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("set-cookie")
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    let value = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("session="))
        .expect("session=…");
    assert!(value.len() >= 40, "a long random token: {value}");
    value.to_string()
}

async fn signup(email: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(shared().url("/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("signup")
}

/// A capture of `query` with the given `Idempotency-Key`.
async fn with_idempotency(
    key: &reqwest::Client,
    query: &str,
    idempotency_key: impl AsRef<str>,
) -> reqwest::Response {
    key.get(capture_url(query))
        .header("idempotency-key", idempotency_key.as_ref())
        .send()
        .await
        .expect("capture")
}

fn with_session(builder: reqwest::RequestBuilder, session: &str) -> reqwest::RequestBuilder {
    builder.header("cookie", format!("session={session}"))
}

/// Sends the request and asserts its JSON error status and code.
async fn expect_error(request: reqwest::RequestBuilder, status: u16, code: &str) {
    let (got, body) = json_of(request.send().await.expect("response")).await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(body["request_id"].is_string(), "{body}");
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("JSON body");
    (status, body)
}

#[tokio::test]
async fn signup_login_logout_and_the_one_time_bonus() {
    let http = reqwest::Client::new();
    let address = email();
    let (status, body) = json_of(signup(&address, "password123").await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["email"], address.to_lowercase());
    assert_eq!(body["balance"], 5, "5 free credits: {body}");
    let account = body["id"].as_str().expect("id").to_string();

    // The same email again, in another case: taken.
    let (status, body) = json_of(signup(&address.to_uppercase(), "password123").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("email_taken"))
    );
    // Bad input: clear 400s.
    let (status, body) = json_of(signup("not-an-email", "password123").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let (status, body) = json_of(signup(&email(), "short").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let raw = http
        .post(shared().url("/api/v1/auth/signup"))
        .body("{\"email\": 3")
        .send()
        .await
        .expect("post");
    let (status, body) = json_of(raw).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );
    assert!(body["request_id"].is_string());

    // Wrong password and unknown email look the same.
    let login = |email: String, password: &'static str| {
        let http = http.clone();
        async move {
            http.post(shared().url("/api/v1/auth/login"))
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .expect("login")
        }
    };
    let (s1, wrong) = json_of(login(address.clone(), "password124").await).await;
    let (s2, unknown) = json_of(login(email(), "password123").await).await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong["error"]["code"], "invalid_credentials");
    assert_eq!(wrong["error"]["message"], unknown["error"]["message"]);

    let ok = login(address.clone(), "password123").await;
    assert_eq!(ok.status(), 200);
    let session = session_from(&ok);
    let (status, me) = json_of(
        with_session(http.get(shared().url("/api/v1/me")), &session)
            .send()
            .await
            .expect("me"),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], account.as_str());
    assert_eq!(me["balance"], 5);

    // Logging out revokes the session server-side.
    let out = with_session(http.post(shared().url("/api/v1/auth/logout")), &session)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    expect_error(
        with_session(http.get(shared().url("/api/v1/me")), &session),
        401,
        "session_expired",
    )
    .await;
    expect_error(http.get(shared().url("/api/v1/me")), 401, "unauthorized").await;

    // Exactly one signup_bonus transaction, and the ledger agrees.
    let snapshot = audited(&account).await;
    assert_eq!(snapshot.balance.available, 5);
    assert_eq!(snapshot.transactions.len(), 1);
    assert_eq!(snapshot.transactions[0].kind.as_str(), "signup_bonus");
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_by_prefix_and_revocable() {
    let http = reqwest::Client::new();
    let signed = signup(&email(), "password123").await;
    let session = session_from(&signed);
    let account = json_of(signed).await.1["id"]
        .as_str()
        .expect("id")
        .to_string();

    let created = with_session(http.post(shared().url("/api/v1/keys")), &session)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .expect("create key");
    let (status, key) = json_of(created).await;
    assert_eq!(status, 201, "{key}");
    let secret = key["key"].as_str().expect("secret shown once").to_string();
    let key_id = key["id"].as_str().expect("id").to_string();
    assert!(secret.starts_with(key["prefix"].as_str().expect("prefix")));

    // The capture endpoint takes the key in x-api-key and as a Bearer token.
    let by_header = client_with_key(&secret)
        .get(capture_url(&plain()))
        .send()
        .await
        .expect("capture");
    assert_eq!(by_header.status(), 200);
    assert_eq!(credits_header(&by_header), Some(4));
    let by_bearer = http
        .get(capture_url(&plain()))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("capture");
    assert_eq!(by_bearer.status(), 200);
    assert_eq!(credits_header(&by_bearer), Some(3));

    // Listed without the secret, with its last use.
    let listing = with_session(http.get(shared().url("/api/v1/keys")), &session)
        .send()
        .await
        .expect("list");
    let text = listing.text().await.expect("text");
    assert!(!text.contains(&secret), "the secret is never listed again");
    let listed: Value = serde_json::from_str(&text).expect("json");
    let entry = &listed["keys"][0];
    assert_eq!(entry["id"], key_id.as_str());
    assert_eq!(entry["name"], "ci");
    assert!(
        entry["createdAt"].is_string() && entry["lastUsedAt"].is_string(),
        "{entry}"
    );

    // Key management needs a session: an API key cannot mint keys.
    let (status, _) = json_of(
        client_with_key(&secret)
            .post(shared().url("/api/v1/keys"))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 401);

    // Revoked keys stop working at once.
    let revoked = with_session(
        http.delete(shared().url(&format!("/api/v1/keys/{key_id}"))),
        &session,
    )
    .send()
    .await
    .expect("revoke");
    assert_eq!(revoked.status(), 204);
    expect_error(
        client_with_key(&secret).get(capture_url(&plain())),
        401,
        "invalid_api_key",
    )
    .await;
    let again = with_session(
        http.delete(shared().url(&format!("/api/v1/keys/{key_id}"))),
        &session,
    )
    .send()
    .await
    .expect("revoke");
    assert_eq!(again.status(), 404);
    // Garbage keys and schemes are refused, not crashed on.
    for (name, value) in [
        ("x-api-key", "sk_nope"),
        ("x-api-key", ""),
        ("authorization", "Basic Zm9vOmJhcg=="),
        ("authorization", "Bearer"),
    ] {
        let r = http
            .get(capture_url(&plain()))
            .header(name, value)
            .send()
            .await
            .expect("capture");
        assert_eq!(r.status(), 401, "{name}: {value}");
    }
    let snapshot = audited(&account).await;
    assert_eq!(snapshot.balance.spent, 2, "two captures charged");
}

#[tokio::test]
async fn credits_endpoints_answer_the_contracts_shapes() {
    let http = reqwest::Client::new();
    // Public, and exactly the contract's packs.
    let packs: Value = http
        .get(shared().url("/api/v1/credits/packs"))
        .send()
        .await
        .expect("packs")
        .json()
        .await
        .expect("json");
    assert_eq!(
        packs,
        json!([
            {"id": "pack_starter", "name": "Starter", "credits": 100, "priceCents": 500, "isPopular": false},
            {"id": "pack_pro", "name": "Pro", "credits": 1000, "priceCents": 3500, "isPopular": true},
            {"id": "pack_business", "name": "Business", "credits": 5000, "priceCents": 12500, "isPopular": false},
            {"id": "pack_enterprise", "name": "Enterprise", "credits": 25000, "priceCents": 50000, "isPopular": false}
        ])
    );
    let (status, _) = json_of(
        http.get(shared().url("/api/v1/credits"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 401);

    let funded = provision(12);
    let key = client_with_key(&funded.key);
    for _ in 0..3 {
        let r = key
            .get(capture_url(&plain()))
            .send()
            .await
            .expect("capture");
        assert_eq!(r.status(), 200);
    }
    let (status, balance) = json_of(
        key.get(shared().url("/api/v1/credits"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(balance["balance"], 9, "{balance}");

    // Newest first, paged, every field present.
    let (_, page1) = json_of(
        key.get(shared().url("/api/v1/credits/transactions?limit=2&offset=0"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(page1["total"], 5, "bonus + adjustment + 3 usage: {page1}");
    let txs = page1["transactions"].as_array().expect("array");
    assert_eq!(txs.len(), 2);
    for t in txs {
        assert_eq!(t["type"], "usage");
        assert_eq!(t["amount"], -1);
        assert!(t["description"]
            .as_str()
            .expect("text")
            .starts_with("Screenshot of http"));
        assert!(t["timestamp"].as_str().expect("ts").ends_with('Z'));
        assert!(t["id"].is_string());
    }
    assert_eq!(txs[0]["balanceAfter"], 9);
    assert_eq!(txs[1]["balanceAfter"], 10);
    let (_, page3) = json_of(
        key.get(shared().url("/api/v1/credits/transactions?limit=2&offset=4"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    let last = &page3["transactions"][0];
    assert_eq!(
        (last["type"].as_str(), last["amount"].as_i64()),
        (Some("signup_bonus"), Some(5))
    );
    for bad in [
        "limit=0",
        "limit=1000",
        "limit=x",
        "offset=-1",
        "offset=1.5",
        "limit=10&sort=asc",
    ] {
        let (status, body) = json_of(
            key.get(shared().url(&format!("/api/v1/credits/transactions?{bad}")))
                .send()
                .await
                .expect("get"),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["field"].is_string(), "{bad}: {body}");
    }
    audited(&funded.account).await;
}

#[tokio::test]
async fn a_hundred_concurrent_captures_on_ten_credits_deliver_exactly_ten() {
    let funded = provision(10);
    let key = client_with_key(&funded.key);
    let requests = (0..100).map(|_| {
        let key = key.clone();
        async move {
            let r = key
                .get(capture_url(&plain()))
                .send()
                .await
                .expect("capture");
            let status = r.status().as_u16();
            let credits = credits_header(&r);
            let body = r.bytes().await.expect("body");
            (status, credits, body)
        }
    });
    let answers = join_all(requests).await;
    let images = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let refused = answers.iter().filter(|(s, _, _)| *s == 402).count();
    assert_eq!(
        (images, refused),
        (10, 90),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (status, credits, body) in &answers {
        let credits = credits.expect("x-credits-remaining on every answer");
        assert!((0..10).contains(&credits), "{credits}");
        if *status == 200 {
            assert!(image::load_from_memory(body).is_ok(), "a real image");
        } else {
            let v: Value = serde_json::from_slice(body).expect("json");
            assert_eq!(v["error"], "Insufficient credits");
            assert_eq!(v["balance"], credits);
            assert_eq!(
                v["message"],
                "Purchase more credits at 127.0.0.1:8080/dashboard/credits"
            );
            assert_eq!(v["code"], "insufficient_credits");
        }
    }
    let snapshot = audited(&funded.account).await;
    assert_eq!(
        (
            snapshot.balance.available,
            snapshot.balance.reserved,
            snapshot.balance.spent
        ),
        (0, 0, 10)
    );
    let last = key
        .get(capture_url(&plain()))
        .send()
        .await
        .expect("capture");
    assert_eq!(last.status(), 402);
    assert_eq!(credits_header(&last), Some(0));
}

#[tokio::test]
async fn failed_captures_never_cost_a_credit() {
    let funded = provision(3);
    let key = client_with_key(&funded.key);
    let cases = [
        ("invalid options", "url=ftp://x&width=-5".to_string(), 400),
        (
            "timeout",
            format!("url={}&timeout=1500", enc(&page("/hang"))),
            504,
        ),
        (
            "navigation error",
            format!("url={}", enc(&format!("http://127.0.0.1:{}/", free_port()))),
            502,
        ),
        (
            "selector not found",
            format!("url={}&selector=%23nope", enc(&page("/plain"))),
            404,
        ),
        (
            "script error",
            format!(
                "url={}&js={}",
                enc(&page("/plain")),
                enc("throw new Error('x')")
            ),
            400,
        ),
    ];
    for (what, query, status) in cases {
        let r = key.get(capture_url(&query)).send().await.expect("capture");
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert_eq!(
            credits_header(&r),
            Some(3),
            "{what}: balance reported and unchanged"
        );
        let snapshot = audited(&funded.account).await;
        assert_eq!(snapshot.balance.available, 3, "{what}");
        assert_eq!(snapshot.holds.len(), 0, "{what}: the hold was released");
    }
    // Queue full: a one-tab daemon with a one-job queue.
    let small = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.farm.tabs_per_browser = 1;
        c.farm.queue_capacity = 1;
    });
    small.wait_ready(1).await;
    let slow = small.url(&format!(
        "/api/v1/screenshot?url={}&timeout=4000",
        enc(&page("/slow/1500"))
    ));
    let burst = join_all((0..4).map(|_| key.get(&slow).send())).await;
    let statuses: Vec<u16> = burst
        .iter()
        .map(|r| r.as_ref().expect("response").status().as_u16())
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count() as i64;
    assert!(statuses.contains(&429), "{statuses:?}");
    let snapshot = audited(&funded.account).await;
    assert_eq!(
        snapshot.balance.available,
        3 - ok,
        "{statuses:?}: only images are charged"
    );
    small.stop();
}

#[tokio::test]
async fn an_idempotency_key_is_never_charged_twice() {
    let funded = provision(5);
    let key = client_with_key(&funded.key);
    let slow = format!("url={}&width=120&height=90", enc(&page("/slow/1500")));
    let first = {
        let (key, slow) = (key.clone(), slow.clone());
        tokio::spawn(async move { with_idempotency(&key, &slow, "order-17").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = json_of(with_idempotency(&key, &slow, "order-17").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("idempotency_in_flight"))
    );
    let first = first.await.expect("join");
    assert_eq!(first.status(), 200);
    assert_eq!(credits_header(&first), Some(4));
    let original = first.bytes().await.expect("body");

    let replay = with_idempotency(&key, &slow, "order-17").await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(credits_header(&replay), Some(4), "not charged again");
    assert_eq!(
        replay.bytes().await.expect("body"),
        original,
        "the same image"
    );

    // Same key, other parameters: refused.
    let (status, body) = json_of(with_idempotency(&key, &plain(), "order-17").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );

    // A failed attempt runs again on retry, and is never charged.
    let hang = format!("url={}&timeout=1000", enc(&page("/hang")));
    for _ in 0..2 {
        let r = with_idempotency(&key, &hang, "order-18").await;
        assert_eq!(
            r.status(),
            504,
            "runs again rather than replaying or refusing"
        );
        assert_eq!(credits_header(&r), Some(4));
    }
    let bad = with_idempotency(&key, &plain(), "x".repeat(300)).await;
    assert_eq!(bad.status(), 400);
    let snapshot = audited(&funded.account).await;
    assert_eq!((snapshot.balance.available, snapshot.balance.spent), (4, 1));
}

#[tokio::test]
async fn without_redis_nothing_is_captured_and_nothing_is_lost() {
    // A Redis of its own, so killing it does not disturb other tests.
    let server = start_redis();
    let funded = provision_on(&server.url, 4);
    let url = server.url.clone();
    let daemon = Daemon::start(move |c| on_own_redis(c, &url));
    daemon.wait_ready(1).await;
    let key = client_with_key(&funded.key);
    let shot = daemon.url(&format!("/api/v1/screenshot?{}", plain()));
    assert_eq!(key.get(&shot).send().await.expect("capture").status(), 200);

    server.kill();
    let before = daemon.metrics_text().await;
    let (status, body) = json_of(key.get(&shot).send().await.expect("capture")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("ledger_unavailable")),
        "{body}"
    );
    let after = daemon.metrics_text().await;
    let captures = |t: &str| crate::support::metric_value(t, "shotfarm_captures_total");
    assert_eq!(
        captures(&before),
        captures(&after),
        "no capture ran without a hold"
    );
    let ready = reqwest::get(daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 503, "not ready without the ledger");

    let server = server.restart().expect("restart redis-server");
    let mut last = 0;
    for _ in 0..50 {
        let r = key.get(&shot).send().await.expect("capture");
        last = r.status().as_u16();
        if last == 200 {
            assert_eq!(credits_header(&r), Some(2));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last, 200, "captures resume when Redis is back");
    let snapshot = audited_on(&server.url, &funded.account).await;
    assert_eq!((snapshot.balance.available, snapshot.balance.spent), (2, 2));
    daemon.stop();
    server.kill();
}

/// The daemon binary with one browser, a short hold grace and a fast sweeper.
fn spawn_daemon(profiles: &std::path::Path) -> (crate::support::ChildGuard, String) {
    crate::support::spawn_binary(
        profiles,
        &[
            ("SHOTFARM_FARM__BROWSERS", "1"),
            ("SHOTFARM_LEDGER__HOLD_GRACE_MS", "300"),
            ("SHOTFARM_REDIS__RESPONSE_TIMEOUT_MS", "300"),
            ("SHOTFARM_LEDGER__SWEEP_INTERVAL_MS", "100"),
        ],
    )
}

#[tokio::test]
async fn a_daemon_killed_mid_capture_gives_the_credit_back_after_restart() {
    let profiles = tempfile::tempdir().expect("tmp");
    let funded = provision(3);
    let key = client_with_key(&funded.key);
    let (mut daemon, base) = spawn_daemon(profiles.path());
    crate::support::wait_ready_at(&base, 1).await;

    let hanging = format!(
        "{base}/api/v1/screenshot?url={}&timeout=2000",
        enc(&page("/hang"))
    );
    let pending = tokio::spawn(key.get(hanging).send());
    // Wait until the hold is open, then kill the daemon before it can settle.
    let mut held = false;
    for _ in 0..100 {
        let s = audited(&funded.account).await;
        if s.holds.len() == 1 {
            assert_eq!((s.balance.available, s.balance.reserved), (2, 1));
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held, "the capture took a hold");
    daemon.kill().expect("SIGKILL");
    let _ = daemon.wait();
    assert!(
        pending.await.expect("join").is_err(),
        "the client lost its connection"
    );
    let s = audited(&funded.account).await;
    assert_eq!(s.holds.len(), 1, "the dead daemon's hold is still open");

    // A new daemon's sweeper expires it after timeout + slack + grace (2 + 0.5 + 0.3 s).
    let (mut daemon, base) = spawn_daemon(profiles.path());
    crate::support::wait_ready_at(&base, 1).await;
    let mut back = false;
    for _ in 0..100 {
        let s = audited(&funded.account).await;
        if s.holds.is_empty() {
            assert_eq!(
                (s.balance.available, s.balance.spent),
                (3, 0),
                "the credit is back"
            );
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the hold expired");
    let ok = key
        .get(format!("{base}/api/v1/screenshot?{}", plain()))
        .send()
        .await
        .expect("capture");
    assert_eq!(ok.status(), 200);
    assert_eq!(credits_header(&ok), Some(2));
    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test]
async fn a_sign_up_that_died_after_claiming_its_email_is_finished_by_the_next() {
    let address = format!("orphan{}@example.com", uuid::Uuid::new_v4().simple());
    // What a daemon killed between the email claim and the account's creation leaves behind.
    let client = redis::Client::open(crate::support::redis_url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let orphan = format!("acc_{}", uuid::Uuid::new_v4().simple());
    let _: () = redis::cmd("SET")
        .arg(shotfarm::ledger::keys::email(&address))
        .arg(&orphan)
        .query_async(&mut conn)
        .await
        .expect("set");
    let (status, body) = json_of(signup(&address, "password123").await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], orphan.as_str());
    assert_eq!(body["balance"], 5);
    let (status, _) = json_of(signup(&address, "password123").await).await;
    assert_eq!(status, 409, "now it is taken");
    audited(&orphan).await;
}

/// Runs `shotfarm <args> --redis-url <test redis>`; returns (success, stdout, stderr).
fn cli(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shotfarm"))
        .args(args)
        .args(["--redis-url", &crate::support::redis_url()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shotfarm");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn operator_commands_create_accounts_and_keys_and_grant_credits() {
    let address = format!("op{}@example.com", uuid::Uuid::new_v4().simple());
    let (ok, out, err) = cli(
        &[
            "accounts",
            "create",
            "--email",
            &address,
            "--password-stdin",
            "--credits",
            "10",
        ],
        Some("operator-pass-1\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("available 15"), "bonus 5 + 10 granted: {out}");
    assert!(out.contains("invariants ok"), "{out}");
    let account = out
        .lines()
        .find_map(|l| l.strip_prefix("account"))
        .map(|s| s.trim().to_string())
        .expect("account id");

    // The password set from stdin logs in over HTTP.
    let login = reqwest::Client::new()
        .post(shared().url("/api/v1/auth/login"))
        .json(&json!({"email": address, "password": "operator-pass-1"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);

    let (ok, out, err) = cli(
        &["keys", "create", "--account", &address, "--name", "ops"],
        None,
    );
    assert!(ok, "{err}");
    let secret = out
        .lines()
        .find(|l| l.starts_with("sk_"))
        .expect("the secret is printed")
        .to_string();
    let shot = client_with_key(&secret)
        .get(capture_url(&plain()))
        .send()
        .await
        .expect("capture");
    assert_eq!(shot.status(), 200);
    assert_eq!(credits_header(&shot), Some(14));

    let (ok, out, err) = cli(
        &[
            "credits",
            "grant",
            "--account",
            &account,
            "--amount",
            "-4",
            "--reason",
            "refund of test",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("balance 10"), "{out}");
    // Never below zero: taking back more than is available changes nothing.
    let (ok, _, err) = cli(
        &[
            "credits",
            "grant",
            "--account",
            &account,
            "--amount",
            "-11",
            "--reason",
            "too much",
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("only 10 credits"), "{err}");
    let (ok, _, err) = cli(
        &[
            "credits",
            "grant",
            "--account",
            "nobody@example.com",
            "--amount",
            "1",
            "--reason",
            "x",
        ],
        None,
    );
    assert!(!ok && err.contains("no account"), "{err}");

    let snapshot = audited(&account).await;
    assert_eq!(snapshot.balance.available, 10);
    let kinds: Vec<&str> = snapshot
        .transactions
        .iter()
        .map(|t| t.kind.as_str())
        .collect();
    assert_eq!(kinds, ["adjustment", "usage", "adjustment", "signup_bonus"]);
    assert_eq!(snapshot.transactions[0].description, "refund of test");
}

#[tokio::test]
async fn one_account_cannot_fill_the_queue() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.ledger.max_in_flight_per_account = 2;
    });
    daemon.wait_ready(1).await;
    let funded = provision(10);
    let key = client_with_key(&funded.key);
    let slow = daemon.url(&format!(
        "/api/v1/screenshot?url={}&width=100&height=100",
        enc(&page("/slow/1500"))
    ));
    let answers = join_all((0..6).map(|_| key.get(&slow).send())).await;
    let mut statuses = Vec::new();
    for answer in answers {
        let r = answer.expect("response");
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            let (_, body) = json_of(r).await;
            assert_eq!(body["error"]["code"], "too_many_in_flight", "{body}");
        }
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 429, 429, 429, 429],
        "two in flight at most"
    );
    let s = audited(&funded.account).await;
    assert_eq!(
        (s.balance.available, s.balance.spent),
        (8, 2),
        "refusals cost nothing"
    );
    // Once they finished, the account may capture again.
    let again = key.get(&slow).send().await.expect("capture");
    assert_eq!(again.status(), 200);
    daemon.stop();
}

#[tokio::test]
async fn each_api_key_is_rate_limited_with_headers() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.limits.requests_per_minute = 60;
        c.limits.burst = 3;
    });
    let funded = provision(5);
    let key = client_with_key(&funded.key);
    // Invalid options: rate limiting counts every request, before anything else runs.
    let bad = daemon.url("/api/v1/screenshot?url=ftp://x");
    let mut seen = Vec::new();
    for _ in 0..5 {
        let r = key.get(&bad).send().await.expect("request");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // The limit is the configured (and documented) rate per minute; the burst is what
        // may be sent at once; remaining counts down the burst; reset is when it is all back.
        assert_eq!(header("x-ratelimit-limit").as_deref(), Some("60"));
        assert_eq!(header("x-ratelimit-burst").as_deref(), Some("3"));
        seen.push((
            r.status().as_u16(),
            header("x-ratelimit-remaining").unwrap_or_default(),
            header("x-ratelimit-reset").unwrap_or_default(),
            header("retry-after"),
        ));
    }
    // 60 per minute is one request a second: each request sets the full burst back by 1 s.
    let s = |v: &str| v.to_string();
    assert_eq!(
        seen,
        [
            (400, s("2"), s("1"), None),
            (400, s("1"), s("2"), None),
            (400, s("0"), s("3"), None),
            (429, s("0"), s("3"), Some(s("1"))),
            (429, s("0"), s("3"), Some(s("1"))),
        ]
    );
    let limited = key.get(&bad).send().await.expect("request");
    let (status, body) = json_of(limited).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    // Another key of the same account has its own budget.
    let other = tokio::task::spawn_blocking({
        let account = funded.account.clone();
        move || {
            let mut config = shotfarm::config::Config::default();
            config.redis.url = crate::support::redis_url();
            shotfarm::ops::block_on(|| async move {
                let op = shotfarm::ops::Operator::connect(&config).await.expect("op");
                op.create_key(&account, "second").await.expect("key").1
            })
        }
    })
    .await
    .expect("join");
    let r = client_with_key(&other)
        .get(&bad)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    assert_eq!(audited(&funded.account).await.balance.available, 5);
    daemon.stop();
}

#[tokio::test]
async fn an_image_over_the_output_cap_fails_and_costs_nothing() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.capture.max_output_bytes = 4096;
    });
    let funded = provision(3);
    let key = client_with_key(&funded.key);
    // A 1280x2000 full-page JPEG at quality 100 is far above 4 KB; a 16x16 PNG far below.
    let big = daemon.url(&format!(
        "/api/v1/screenshot?url={}&full_page=true&format=jpeg&quality=100",
        enc(&page("/tall/2000"))
    ));
    let r = key.get(&big).send().await.expect("capture");
    assert_eq!(credits_header(&r), Some(3), "nothing charged");
    let (status, body) = json_of(r).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "output_too_large", "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    let small = daemon.url(&format!(
        "/api/v1/screenshot?url={}&width=16&height=16",
        enc(&page("/plain"))
    ));
    let r = key.get(&small).send().await.expect("capture");
    assert_eq!(r.status(), 200);
    assert_eq!(credits_header(&r), Some(2));
    let s = audited(&funded.account).await;
    assert_eq!(
        (s.balance.available, s.balance.spent, s.holds.len()),
        (2, 1, 0)
    );
    daemon.stop();
}
