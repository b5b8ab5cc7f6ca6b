//! The credits contract's own code samples (`tests/contract/`), run verbatim against a live
//! daemon with only the base URL and the session placeholder replaced: curl and Python from a
//! shell, JavaScript inside real Chromium on the daemon's origin (where `credentials:
//! 'include'` sends the session cookie, as in a customer's dashboard).

use std::process::Command;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::network::CookieParam;
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::Browser;
use futures::StreamExt;
use serde_json::{json, Value};
use shotfarm::config::ChromiumConfig;
use shotfarm::farm::process::ChromiumProcess;

use crate::support::{client_with_key, enc, page, shared};

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

#[tokio::test]
async fn the_javascript_snippet_runs_in_chromium_on_our_origin() {
    let session = customer().await;
    let base = format!("http://{}", shared().bound.api);
    let profiles = tempfile::tempdir().expect("tmp");
    let chromium = ChromiumConfig {
        profile_dir: profiles.path().to_path_buf(),
        ..ChromiumConfig::default()
    };
    let process = ChromiumProcess::launch(&chromium, "snippet")
        .await
        .expect("chromium");
    let (browser, mut handler) = Browser::connect_with_config(
        process.ws_url.clone(),
        HandlerConfig {
            viewport: None,
            ..Default::default()
        },
    )
    .await
    .expect("devtools");
    let pump = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let result = tokio::time::timeout(Duration::from_secs(30), async {
        let page = browser
            .new_page(format!("{base}/api/v1/credits/packs"))
            .await
            .expect("page on our origin");
        page.set_cookie(
            CookieParam::builder()
                .name("session")
                .value(session.clone())
                .url(base.clone())
                .http_only(true)
                .build()
                .expect("cookie"),
        )
        .await
        .expect("set cookie");
        // The snippet, verbatim, with console.log captured.
        let code = format!(
            "(async () => {{ const printed = []; console.log = (...a) => printed.push(a.join(' '));\n{}\nreturn printed; }})()",
            snippet("balance.js", &base, &session)
        );
        let evaluated = page
            .evaluate_expression(
                EvaluateParams::builder()
                    .expression(code)
                    .await_promise(true)
                    .return_by_value(true)
                    .build()
                    .expect("params"),
            )
            .await
            .expect("evaluate");
        evaluated.into_value::<Vec<String>>().expect("printed lines")
    })
    .await
    .expect("the snippet finished");
    assert_eq!(result, ["Remaining credits: 4"]);
    drop(browser);
    pump.abort();
    process.kill().await;
}
