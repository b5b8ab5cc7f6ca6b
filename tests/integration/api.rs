//! The HTTP contract: error bodies and codes, headers, probes and metrics.

use std::time::{Duration, Instant};

use crate::support::{
    audited, client, client_with_key, enc, free_port, get, metric_value, page, provision,
    ready_shared, shared,
};
use serde_json::{json, Value};

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/json");
    let header_id = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_string();
    let body: Value = response.json().await.expect("json error body");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(body["request_id"], header_id.as_str(), "{body}");
    (status, body)
}

/// Sends `request` and reads its JSON error ([`error_of`]).
async fn sent(request: reqwest::RequestBuilder) -> (u16, Value) {
    error_of(request.send().await.expect("request")).await
}

/// The status and the error `code` of an error answer.
fn code_of((status, body): (u16, Value)) -> (u16, Option<String>) {
    (status, body["error"]["code"].as_str().map(str::to_string))
}

#[tokio::test]
async fn invalid_options_get_400_naming_the_field() {
    let daemon = shared();
    let url = enc(&page("/plain"));
    let client = client();
    for (query, field) in [
        (format!("url={url}&format=gif"), "format"),
        (format!("url={url}&width=0"), "width"),
        (
            format!("url={url}&device_scale_factor=9"),
            "device_scale_factor",
        ),
        (format!("url={url}&timeout=999999999"), "timeout"),
        (format!("url={url}&wait_until=sometime"), "wait_until"),
        ("url=javascript:alert(1)".to_string(), "url"),
        (format!("url={url}&bogus=1"), "bogus"),
        (String::new(), "url"),
    ] {
        let shot = daemon.url(&format!("/api/v1/screenshot?{query}"));
        let (status, body) = sent(client.get(shot)).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"]["code"], "invalid_parameter");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(field));
    }
    // The JSON body takes the same names.
    let (status, body) = sent(
        client
            .post(daemon.url("/api/v1/screenshot"))
            .json(&json!({"url": page("/plain"), "quality": 500, "format": "jpeg"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("quality"))
    );
    // A body that is not JSON is a clear 400 too.
    let post = client.post(daemon.url("/api/v1/screenshot"));
    assert_eq!(
        code_of(sent(post.body("{not json")).await),
        (400, Some("invalid_body".into()))
    );
}

#[tokio::test]
async fn success_carries_request_id_and_server_timing() {
    let daemon = ready_shared().await;
    let response = client()
        .get(daemon.url(&format!(
            "/api/v1/screenshot?url={}&width=300&height=200",
            enc(&page("/plain"))
        )))
        .header("x-request-id", "test-req-42")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "test-req-42");
    let timing = response.headers()["server-timing"]
        .to_str()
        .expect("ascii")
        .to_string();
    let dur = |name: &str| -> f64 {
        timing
            .split(", ")
            .find_map(|part| part.strip_prefix(&format!("{name};dur=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in {timing}"))
    };
    let phases: f64 = [
        "context", "emulate", "navigate", "page", "capture", "encode",
    ]
    .iter()
    .map(|p| dur(p))
    .sum();
    // The phases are parts of the render time, which is part of the total.
    assert!(dur("navigate") > 0.0 && dur("capture") > 0.0, "{timing}");
    assert!(phases <= dur("render") + 0.05, "{timing}");
    assert!(
        dur("queue") + dur("render") <= dur("total") + 0.05,
        "{timing}"
    );
}

#[tokio::test]
async fn page_failures_have_their_own_codes() {
    let daemon = ready_shared().await;
    let client = client();
    let closed = format!("http://127.0.0.1:{}/", free_port());
    let cases = [
        (format!("url={}", enc(&closed)), 502, "navigation_failed"),
        (
            format!(
                "url={}&selector=%23nothing-here&timeout=8000",
                enc(&page("/plain"))
            ),
            404,
            "selector_not_found",
        ),
        (
            format!(
                "url={}&wait_for_selector=%23nothing&timeout=4000",
                enc(&page("/plain"))
            ),
            404,
            "selector_not_found",
        ),
        (
            format!("url={}&selector=%5B%5B%5B", enc(&page("/plain"))),
            400,
            "invalid_selector",
        ),
        (
            format!(
                "url={}&js={}",
                enc(&page("/plain")),
                enc("throw new Error('boom')")
            ),
            400,
            "script_error",
        ),
    ];
    for (query, want_status, want_code) in cases {
        let shot = daemon.url(&format!("/api/v1/screenshot?{query}"));
        let (status, body) = sent(client.get(shot)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{query}: {body}"
        );
    }
}

/// A host that does not resolve is a navigation failure (502, as for any DNS failure), not a
/// policy refusal; it is found before a credit is held, so nothing is held or charged.
#[tokio::test]
async fn an_unresolvable_host_is_a_free_navigation_failure() {
    let daemon = ready_shared().await;
    let funded = provision(3);
    // `.invalid` never resolves (RFC 6761), with or without internet.
    let response = client_with_key(&funded.key)
        .get(daemon.url(&format!(
            "/api/v1/screenshot?url={}",
            enc("http://no-such-host.invalid/")
        )))
        .send()
        .await
        .expect("get");
    let (status, body) = error_of(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("navigation_failed")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no-such-host.invalid does not resolve"),
        "{body}"
    );
    let s = audited(&funded.account).await;
    assert_eq!(
        (s.balance.available, s.balance.reserved, s.balance.spent),
        (3, 0, 0),
        "nothing held or charged"
    );
}

#[tokio::test]
async fn a_page_that_never_loads_times_out_within_its_deadline() {
    let daemon = ready_shared().await;
    // The shared account is made on first use: not inside the timed request.
    let client = client();
    let started = Instant::now();
    let response = client
        .get(daemon.url(&format!(
            "/api/v1/screenshot?url={}&timeout=1500",
            enc(&page("/hang"))
        )))
        .send()
        .await
        .expect("get");
    let elapsed = started.elapsed();
    let (status, body) = error_of(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("timeout"))
    );
    assert!(
        elapsed >= Duration::from_millis(1400),
        "not before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500 + 1000),
        "answered at the deadline: {elapsed:?}"
    );
    // The farm is still serving afterwards.
    let ok = get(daemon.url(&format!("/api/v1/screenshot?url={}", enc(&page("/plain")))))
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let daemon = shared();
    let client = client();
    assert_eq!(
        code_of(sent(client.get(daemon.url("/nope"))).await),
        (404, Some("not_found".into()))
    );
    let (status, _) = sent(client.delete(daemon.url("/api/v1/screenshot"))).await;
    assert!(status == 405 || status == 404, "{status}");
}

#[tokio::test]
async fn probes_and_metrics_are_served() {
    let daemon = ready_shared().await;
    let ready: Value = get(daemon.url("/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        get(daemon.url("/healthz")).await.expect("healthz").status(),
        200
    );
    let ok = get(daemon.url(&format!(
        "/api/v1/screenshot?url={}&width=100&height=100",
        enc(&page("/plain"))
    )))
    .await
    .expect("capture");
    assert_eq!(ok.status(), 200);
    let text = daemon.metrics_text().await;
    for name in [
        "shotfarm_queue_depth",
        "shotfarm_captures_in_flight",
        "shotfarm_queue_wait_seconds_bucket",
        "shotfarm_render_seconds_bucket",
        "shotfarm_browsers{state=\"ready\"}",
        "shotfarm_http_requests_total{route=\"screenshot\",status=\"200\"}",
        "shotfarm_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
    assert!(metric_value(&text, "shotfarm_captures_total{outcome=\"success\"}") >= 1.0);
    assert_eq!(
        metric_value(&text, "shotfarm_browsers{state=\"ready\"}"),
        2.0
    );
}

#[tokio::test]
async fn oversized_request_heads_are_refused_and_the_daemon_carries_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let daemon = shared();
    let probe = |head: String| async move {
        let mut stream = tokio::net::TcpStream::connect(daemon.bound.api)
            .await
            .expect("connect");
        let _ = stream.write_all(head.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge = format!("x-big: {}\r\n", "a".repeat(1024 * 1024));
    // hyper's own limits (100 headers, ~400 KiB of head) answer before any handler runs.
    for (what, headers) in [("200 headers", many), ("a 1 MiB header", huge)] {
        let answer = probe(format!(
            "GET /api/v1/credits/packs HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
        ))
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{what}: {:?}",
            answer.lines().next()
        );
    }
    let r = client()
        .get(daemon.url("/api/v1/credits/packs"))
        .send()
        .await
        .expect("the daemon still answers");
    assert_eq!(r.status(), 200);
}
