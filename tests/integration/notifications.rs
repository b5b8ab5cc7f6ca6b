//! Low-balance notifications, against the payments daemon and a receiver on loopback (a
//! wiremock server standing in for the customer's endpoint): one signed Standard Webhooks
//! message per fall below the threshold, retried until accepted or given up, with signatures
//! checked here by our own HMAC; and notification URLs the egress policy refuses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::payments::{
    capture, code, customer, daemon, deliver, hmac_sha256, json_of, paid, polar_signer, OrderSpec,
};
use crate::support::{client_with_key, credits_header, metric_value};

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
