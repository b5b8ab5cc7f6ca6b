//! Issue 14's HTTP findings against the real daemon: connection limits (idle, slowloris, caps),
//! the session cookie only ever authenticating same-origin requests, and JSON errors for
//! oversized requests.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::support::{audited, enc, metric_value, page, provision_as, shared, Daemon};

/// A connection to `to` from the loopback address `from` (127.0.0.0/8 is all local, so each
/// test client can have an address of its own).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// Reads until the peer closes (or resets) the connection; what it sent.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let done = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    done.ok().map(|()| all)
}

/// Status and JSON body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (status, serde_json::from_str(body).expect("a JSON body"))
}

/// Sends a request on a fresh connection from `from` and returns the answer, read to the close.
async fn refused_answer(from: [u8; 4], to: SocketAddr) -> (u16, Value) {
    let mut stream = connect_from(from, to).await;
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let raw = read_to_close(&mut stream, Duration::from_secs(10))
        .await
        .expect("the refused connection is closed");
    parse_response(&raw)
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (want_status, Some(code)),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
}

/// Waits (up to 15 s) until the daemon has exactly `n` API connections open.
async fn wait_open(daemon: &Daemon, n: usize) -> bool {
    for _ in 0..150 {
        let text = daemon.metrics_text().await;
        if metric_value(&text, "shotfarm_http_connections_open ") == n as f64 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A client with the account's key, its connections from `from`.
fn key_client_from(key: &str, from: [u8; 4]) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", key.parse().expect("key header"));
    reqwest::Client::builder()
        .default_headers(headers)
        .local_address(IpAddr::from(from))
        .build()
        .expect("client")
}

async fn capture_status(client: reqwest::Client, base: String, ms: u64) -> u16 {
    let url = format!(
        "{base}/api/v1/screenshot?url={}&width=200&height=150",
        enc(&page(&format!("/slow/{ms}")))
    );
    let response = client.get(url).send().await.expect("capture");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("capture body");
    assert!(status != 200 || !body.is_empty());
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_over_the_caps_refused_and_captures_go_on() {
    let header = Duration::from_millis(2_000);
    let idle = Duration::from_millis(3_000);
    let daemon = Daemon::start(|c| {
        c.server.header_timeout_ms = 2_000;
        c.server.idle_timeout_ms = 3_000;
        c.server.max_connections_per_client = 4;
        c.server.max_connections = 8;
    });
    daemon.wait_ready(2).await;
    let api = daemon.bound.api;
    let base = format!("http://{api}");
    let funded = super::support::provision(100);
    assert!(
        wait_open(&daemon, 0).await,
        "no connection left open by the start"
    );

    // Phase 1: a capture longer than both limits runs while silent, slow and idle
    // connections are closed by them.
    let capture = tokio::spawn(capture_status(
        key_client_from(&funded.key, [127, 0, 0, 1]),
        base.clone(),
        4_500,
    ));
    let silent = (0..3).map(|_| async {
        let mut stream = connect_from([127, 0, 0, 2], api).await;
        let start = Instant::now();
        read_to_close(&mut stream, header + Duration::from_secs(5))
            .await
            .map(|_| start.elapsed())
    });
    let slowloris = async {
        let mut stream = connect_from([127, 0, 0, 3], api).await;
        let start = Instant::now();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ").await;
        let mut buf = [0u8; 1024];
        while start.elapsed() < header + Duration::from_secs(5) {
            match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => {}
                Err(_) => {
                    if stream.write_all(b"a").await.is_err() {
                        return Some(start.elapsed());
                    }
                }
            }
        }
        None
    };
    let kept_alive = async {
        let mut stream = connect_from([127, 0, 0, 4], api).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("request");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("response");
            assert!(n > 0, "answered before the close");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
        let answered = Instant::now();
        read_to_close(&mut stream, idle + Duration::from_secs(5))
            .await
            .map(|_| answered.elapsed())
    };
    let (silent, slowloris, kept_alive) =
        tokio::join!(futures::future::join_all(silent), slowloris, kept_alive);
    let early = Duration::from_millis(250);
    for lived in silent {
        let lived = lived.expect("a silent connection is closed within the header timeout + 5 s");
        assert!(lived + early >= header, "closed too early: {lived:?}");
    }
    let lived =
        slowloris.expect("a slowloris connection is closed within the header timeout + 5 s");
    assert!(lived + early >= header, "closed too early: {lived:?}");
    let lived =
        kept_alive.expect("an idle keep-alive connection is closed within the idle timeout + 5 s");
    assert!(
        lived + early >= idle,
        "an idle keep-alive connection gets the idle timeout, not the header timeout: {lived:?}"
    );
    eprintln!("closed after: slowloris {slowloris:?}, idle keep-alive {lived:?}");
    assert_eq!(
        capture.await.expect("capture task"),
        200,
        "a capture longer than both timeouts is answered"
    );

    // Phase 2: eight captures in progress fill both caps; new connections are refused with
    // the JSON error, and the captures are all answered.
    assert!(
        wait_open(&daemon, 0).await,
        "every connection of the first phase was closed"
    );
    let five = key_client_from(&funded.key, [127, 0, 0, 5]);
    let six = key_client_from(&funded.key, [127, 0, 0, 6]);
    let captures: Vec<_> = (0..8)
        .map(|i| {
            let client = if i < 4 { five.clone() } else { six.clone() };
            tokio::spawn(capture_status(client, base.clone(), 4_000))
        })
        .collect();
    assert!(
        wait_open(&daemon, 8).await,
        "eight connections carry the eight captures"
    );
    let (status, body) = refused_answer([127, 0, 0, 5], api).await;
    assert_error(status, &body, 429, "too_many_connections");
    let (status, body) = refused_answer([127, 0, 0, 7], api).await;
    assert_error(status, &body, 503, "server_busy");
    for capture in captures {
        assert_eq!(capture.await.expect("capture task"), 200);
    }
    drop((five, six));
    assert!(
        wait_open(&daemon, 0).await,
        "closed connections give their places back"
    );
    let again = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 5]))
        .build()
        .expect("client")
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(again.status().as_u16(), 200);

    let text = daemon.metrics_text().await;
    let closed = |reason: &str| {
        metric_value(
            &text,
            &format!("shotfarm_http_connections_closed_total{{reason=\"{reason}\"}}"),
        )
    };
    assert!(closed("header_timeout") >= 4.0, "{text}");
    assert!(closed("idle_timeout") >= 1.0, "{text}");
    assert!(closed("client_limit") >= 1.0, "{text}");
    assert!(closed("total_limit") >= 1.0, "{text}");
    audited(&funded.account).await;
    daemon.stop();
}

/// Logs in as `email` (password `password123`) and returns the session token.
async fn login(email: &str) -> String {
    let response = reqwest::Client::new()
        .post(shared().url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("set-cookie")
        .to_string();
    cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("session="))
        .expect("session=…")
        .to_string()
}

/// A request with the session cookie and whatever `headers` say.
fn with_cookie(
    method: reqwest::Method,
    path: &str,
    session: &str,
    headers: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let mut request = reqwest::Client::new()
        .request(method, shared().url(path))
        .header("cookie", format!("session={session}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

async fn status_and_json(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("response");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn key_count(session: &str) -> usize {
    let (status, body) = status_and_json(with_cookie(
        reqwest::Method::GET,
        "/api/v1/keys",
        session,
        &[("sec-fetch-site", "same-origin")],
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    body["keys"].as_array().map_or(0, Vec::len)
}

fn fresh_email() -> String {
    format!("h{}@test.example", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn a_key_header_is_the_credential_and_never_falls_back_to_the_cookie() {
    let email = fresh_email();
    let funded = provision_as(&super::support::redis_url(), &email, 10);
    let session = login(&email).await;
    let keys_before = key_count(&session).await;
    let evil = ("origin", "https://evil.example");
    for key in ["sk_bogus_0123456789", funded.key.as_str()] {
        for header in ["x-api-key", "authorization"] {
            let value = if header == "authorization" {
                format!("Bearer {key}")
            } else {
                key.to_string()
            };
            let (status, body) = status_and_json(
                with_cookie(reqwest::Method::POST, "/api/v1/keys", &session, &[evil])
                    .header(header, value)
                    .json(&json!({"name": "stolen"})),
            )
            .await;
            assert_eq!(status, 401, "{body}");
            assert!(body["request_id"].is_string(), "{body}");
        }
    }
    assert_eq!(key_count(&session).await, keys_before, "no key was created");

    // A bogus key with a valid cookie does not capture as the cookie's account either.
    let (status, body) = status_and_json(
        with_cookie(
            reqwest::Method::GET,
            &format!("/api/v1/screenshot?url={}", enc(&page("/plain"))),
            &session,
            &[("sec-fetch-site", "same-origin")],
        )
        .header("x-api-key", "sk_bogus_0123456789"),
    )
    .await;
    assert_error(status, &body, 401, "invalid_api_key");

    // Log-out from another site's page is refused too (the cookie is a credential there).
    let (status, body) = status_and_json(with_cookie(
        reqwest::Method::POST,
        "/api/v1/auth/logout",
        &session,
        &[evil],
    ))
    .await;
    assert_error(status, &body, 403, "cross_site_request");
    assert_eq!(key_count(&session).await, keys_before, "still logged in");
    assert_eq!(audited(&funded.account).await.balance.available, 10);
}

#[tokio::test]
async fn cookie_captures_from_other_sites_are_refused_and_cost_nothing() {
    let email = fresh_email();
    let funded = provision_as(&super::support::redis_url(), &email, 10);
    let session = login(&email).await;
    let path = format!(
        "/api/v1/screenshot?url={}&width=200&height=150",
        enc(&page("/plain"))
    );
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "https://evil.example")],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "no-cors"),
        ],
    ] {
        let (status, body) =
            status_and_json(with_cookie(reqwest::Method::GET, &path, &session, &headers)).await;
        assert_error(status, &body, 403, "cross_site_request");
        assert_eq!(
            audited(&funded.account).await.balance.available,
            10,
            "no credit moved for {headers:?}"
        );
    }
    let host = shared().bound.api.to_string();
    let own_origin = format!("http://{host}");
    for headers in [
        vec![("sec-fetch-site", "same-origin")],
        vec![("origin", own_origin.as_str())],
    ] {
        let response = with_cookie(reqwest::Method::GET, &path, &session, &headers)
            .send()
            .await
            .expect("capture");
        assert_eq!(response.status().as_u16(), 200, "{headers:?}");
        assert!(!response.bytes().await.expect("image").is_empty());
    }
    assert_eq!(audited(&funded.account).await.balance.available, 8);
}

/// Sends `request` on a fresh connection to the shared daemon (writing on while the answer
/// comes back) and returns the status and JSON body of the answer.
async fn raw_exchange(request: Vec<u8>) -> (u16, Value) {
    let stream = TcpStream::connect(shared().bound.api)
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let writer = tokio::spawn(async move { writer.write_all(&request).await });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&raw);
            if let Some((_, body)) = text.split_once("\r\n\r\n") {
                if serde_json::from_str::<Value>(body).is_ok() {
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "answered in time");
    writer.abort();
    parse_response(&raw)
}

/// A body of `n` bytes of JSON-looking filler.
fn big_body(n: usize) -> Vec<u8> {
    let mut body = b"{\"x\":\"".to_vec();
    body.resize(n - 2, b'a');
    body.extend_from_slice(b"\"}");
    body
}

#[tokio::test]
async fn oversized_bodies_uris_and_heads_get_json_errors() {
    let email = fresh_email();
    let funded = provision_as(&super::support::redis_url(), &email, 10);
    let session = login(&email).await;
    let client = reqwest::Client::new();
    let two_mib = big_body(2 << 20);

    // POST /screenshot over server.max_body_bytes: 413, with or without a Content-Length.
    let (status, body) = status_and_json(
        client
            .post(shared().url("/api/v1/screenshot"))
            .header("x-api-key", &funded.key)
            .header("content-type", "application/json")
            .body(two_mib.clone()),
    )
    .await;
    assert_error(status, &body, 413, "payload_too_large");
    // Chunked, no Content-Length (hyper's client always sends one; so, raw).
    let mut chunked = format!(
        "POST /api/v1/screenshot HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        funded.key
    )
    .into_bytes();
    for chunk in two_mib.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw_exchange(chunked).await;
    assert_error(status, &body, 413, "payload_too_large");

    // Every other route with a body, with the credentials it needs.
    let same = [("sec-fetch-site", "same-origin")];
    for (method, path, cookie) in [
        (reqwest::Method::POST, "/api/v1/auth/signup", false),
        (reqwest::Method::POST, "/api/v1/auth/login", false),
        (reqwest::Method::POST, "/api/v1/webhooks/polar", false),
        (reqwest::Method::POST, "/api/v1/keys", true),
        (reqwest::Method::POST, "/api/v1/credits/purchase", true),
        (reqwest::Method::PUT, "/api/v1/credits/auto-topup", true),
    ] {
        let request = if cookie {
            with_cookie(method, path, &session, &same)
        } else {
            client.request(method, shared().url(path))
        };
        let (status, body) = status_and_json(request.body(two_mib.clone())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (413, Some("payload_too_large")),
            "{path}: {body}"
        );
        assert!(body["request_id"].is_string(), "{path}: {body}");
    }
    assert_eq!(audited(&funded.account).await.balance.available, 10);

    // 10,000 query parameters (~110 KB, beyond hyper's own 64 KiB limit) and a 40 KB URI
    // (beyond ours, within hyper's): 414 with the JSON body.
    let many: String = (0..10_000).map(|i| format!("opt{i}=v&")).collect();
    let long = "a".repeat(40_000);
    for query in [many, format!("url={long}")] {
        let request = format!(
            "GET /api/v1/screenshot?{query} HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\n\r\n",
            funded.key
        );
        let (status, body) = raw_exchange(request.into_bytes()).await;
        assert_error(status, &body, 414, "uri_too_long");
    }
    // Too many headers, and headers too large: 431 with the JSON body.
    let mut many = reqwest::header::HeaderMap::new();
    for i in 0..150 {
        many.insert(
            reqwest::header::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("name"),
            "v".parse().expect("value"),
        );
    }
    let (status, body) = status_and_json(client.get(shared().url("/healthz")).headers(many)).await;
    assert_error(status, &body, 431, "headers_too_large");
    let (status, body) = status_and_json(
        client
            .get(shared().url("/healthz"))
            .header("x-big", "b".repeat(40_000)),
    )
    .await;
    assert_error(status, &body, 431, "headers_too_large");
    assert_eq!(audited(&funded.account).await.balance.available, 10);
    // The daemon still answers normally.
    let ok = client
        .get(shared().url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(ok.status().as_u16(), 200);
}
