//! The credits contract's own code samples (`tests/contract/`), run verbatim against a live
//! daemon with only the base URL and the session placeholder replaced: curl and Python from a
//! shell, JavaScript inside real Chromium on the daemon's origin (where `credentials:
//! 'include'` sends the session cookie, as in a customer's dashboard).

use std::process::Command;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::network::CookieParam;
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use serde_json::{json, Value};

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::payments;
use crate::support::{audited, client_with_key, enc, page, shared, TestBrowser};

const ORIGINAL_BASE: &str = "https://screenshotapi.to";

/// A contract snippet with our base URL and a real session token in place.
fn snippet(name: &str, base: &str, session: &str) -> String {
    let path = format!("{}/tests/contract/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("contract snippet");
    assert!(
        text.contains(ORIGINAL_BASE),
        "{name} is the verbatim snippet"
    );
    text.replace(ORIGINAL_BASE, base)
        .replace("your_session_cookie", session)
}

/// Signs up a fresh account, spends one credit with an API key, and returns its session.
async fn customer() -> String {
    let http = reqwest::Client::new();
    let email = format!("s{}@example.com", uuid::Uuid::new_v4().simple());
    let signed = http
        .post(shared().url("/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(signed.status(), 201);
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    let session = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("session="))
        .expect("session")
        .to_string();
    let key: Value = http
        .post(shared().url("/api/v1/keys"))
        .header("cookie", format!("session={session}"))
        .send()
        .await
        .expect("key")
        .json()
        .await
        .expect("json");
    let shot = client_with_key(key["key"].as_str().expect("secret"))
        .get(shared().url(&format!(
            "/api/v1/screenshot?url={}&width=100&height=100",
            enc(&page("/plain"))
        )))
        .send()
        .await
        .expect("capture");
    assert_eq!(shot.status(), 200);
    session
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (make test installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A Python 3 that has `requests` (the one on PATH, else Debian's).
fn python() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import requests"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("python3 with requests (make test installs python3-requests)")
}

#[tokio::test]
async fn curl_and_python_snippets_work_with_only_the_base_url_changed() {
    let session = customer().await;
    let base = format!("http://{}", shared().bound.api);

    let balance: Value =
        serde_json::from_str(&run("sh", &["-c", &snippet("balance.sh", &base, &session)]))
            .expect("json");
    assert_eq!(balance["balance"], 4, "5 free credits, 1 spent: {balance}");

    let packs: Value =
        serde_json::from_str(&run("sh", &["-c", &snippet("packs.sh", &base, &session)]))
            .expect("json");
    assert_eq!(packs.as_array().map(Vec::len), Some(4));
    assert_eq!(packs[1]["id"], "pack_pro");

    let history: Value = serde_json::from_str(&run(
        "sh",
        &["-c", &snippet("transactions.sh", &base, &session)],
    ))
    .expect("json");
    let types: Vec<&str> = history["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .filter_map(|t| t["type"].as_str())
        .collect();
    assert_eq!(types, ["usage", "signup_bonus"]);

    let printed = run(python(), &["-c", &snippet("balance.py", &base, &session)]);
    assert_eq!(printed.trim(), "Remaining credits: 4");
}

/// Real Chromium with one page open on our origin and the customer's session cookie set, as in
/// a customer's dashboard.
struct OnOurOrigin {
    chromium: TestBrowser,
    page: chromiumoxide::Page,
}

impl OnOurOrigin {
    async fn open(base: &str, session: &str) -> OnOurOrigin {
        let chromium = TestBrowser::launch("snippet").await;
        let page = chromium.page(&format!("{base}/api/v1/credits/packs")).await;
        page.set_cookie(
            CookieParam::builder()
                .name("session")
                .value(session)
                .url(base)
                .http_only(true)
                .build()
                .expect("cookie"),
        )
        .await
        .expect("set cookie");
        OnOurOrigin { chromium, page }
    }

    /// Runs a snippet verbatim inside an async function with `console.log` captured; the
    /// lines it printed, or the evaluation's error (a page that navigated away ends it).
    async fn run(&self, snippet: &str) -> Result<Vec<String>, String> {
        let code = format!(
            "(async () => {{ const printed = []; console.log = (...a) => printed.push(a.join(' '));\n{snippet}\nreturn printed; }})()"
        );
        let evaluated = tokio::time::timeout(
            Duration::from_secs(30),
            self.page.evaluate_expression(
                EvaluateParams::builder()
                    .expression(code)
                    .await_promise(true)
                    .return_by_value(true)
                    .build()
                    .expect("params"),
            ),
        )
        .await
        .map_err(|_| "the snippet did not finish in 30 s".to_string())?
        .map_err(|e| e.to_string())?;
        evaluated
            .into_value::<Vec<String>>()
            .map_err(|e| e.to_string())
    }

    async fn close(self) {
        drop(self.page);
        self.chromium.close().await;
    }
}

#[tokio::test]
async fn the_javascript_snippet_runs_in_chromium_on_our_origin() {
    let session = customer().await;
    let base = format!("http://{}", shared().bound.api);
    let chromium = OnOurOrigin::open(&base, &session).await;
    let printed = chromium.run(&snippet("balance.js", &base, &session)).await;
    chromium.close().await;
    assert_eq!(printed.expect("the snippet ran"), ["Remaining credits: 4"]);
}

/// The checkout Polar answers for `account`, with its URL on `landing` (a loopback server
/// standing in for Polar's checkout page, so a browser can really go there).
async fn checkout_at(
    account: &str,
    email: &str,
    landing: &MockServer,
    name: &str,
) -> (String, wiremock::MockGuard) {
    let (url, mut body) = payments::checkout_response(account, email, "pack_pro", false);
    let secret = url.rsplit('/').next().expect("client secret").to_string();
    let url = format!("{}/checkout/{secret}", landing.uri());
    body["url"] = Value::String(url.clone());
    let guard = payments::expect_checkout(
        account,
        ResponseTemplate::new(201).set_body_json(body),
        name,
    )
    .await;
    (url, guard)
}

#[tokio::test]
async fn curl_and_python_purchase_snippets_get_a_polar_checkout_url() {
    let landing = MockServer::start().await;
    let c = payments::customer(5).await;
    let base = format!("http://{}", payments::daemon().bound.api);

    let (url, guard) = checkout_at(&c.funded.account, &c.email, &landing, "curl").await;
    let answer: Value = serde_json::from_str(&run(
        "sh",
        &["-c", &snippet("purchase.sh", &base, &c.session)],
    ))
    .expect("JSON");
    assert_eq!(answer, json!({ "checkoutUrl": url }));
    let sent: Value =
        serde_json::from_slice(&guard.received_requests().await[0].body).expect("JSON body");
    assert_eq!(sent["metadata"]["pack_id"], "pack_pro");
    drop(guard);

    let (url, guard) = checkout_at(&c.funded.account, &c.email, &landing, "python").await;
    // The snippet leaves the URL in `checkout_url`; one line after it prints it.
    let printed = run(
        python(),
        &[
            "-c",
            &format!(
                "{}\nprint(checkout_url)",
                snippet("purchase.py", &base, &c.session)
            ),
        ],
    );
    assert_eq!(printed.trim(), url);
    drop(guard);
    // Nothing is charged or granted until Polar says the order is paid.
    assert_eq!(audited(&c.funded.account).await.balance.available, 5);
}

#[tokio::test]
async fn the_javascript_purchase_snippet_sends_the_browser_to_checkout() {
    let landing = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/html")
                .set_body_string("<title>Polar checkout</title>"),
        )
        .mount(&landing)
        .await;
    let c = payments::customer(5).await;
    let base = format!("http://{}", payments::daemon().bound.api);
    let (url, guard) = checkout_at(&c.funded.account, &c.email, &landing, "javascript").await;
    let chromium = OnOurOrigin::open(&base, &c.session).await;
    // The snippet ends by navigating away, which may end the evaluation itself.
    let _ = chromium
        .run(&snippet("purchase.js", &base, &c.session))
        .await;
    let mut landed = false;
    for _ in 0..100 {
        let at = chromium.page.url().await.ok().flatten();
        if at.as_deref() == Some(url.as_str()) {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requested: Vec<String> = landing
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_string())
        .filter(|p| p != "/favicon.ico")
        .collect();
    chromium.close().await;
    assert!(
        landed,
        "the browser went to {url}; the landing page saw {requested:?}"
    );
    let checkout_path = url.trim_start_matches(&landing.uri()).to_string();
    assert_eq!(requested, [checkout_path]);
    drop(guard);
}
