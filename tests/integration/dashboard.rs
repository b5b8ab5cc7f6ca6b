//! The customer dashboard end to end: the payments daemon (Polar stand-in on loopback), real
//! headless Chromium driving `/dashboard` on the daemon's own origin, and nothing of our stack
//! mocked. A customer signs up, makes a key, captures in the playground, sets up auto top-up,
//! buys through the low-balance banner and sees every page (screenshots of each go to
//! `target/dashboard-screens/`); a page on another origin cannot change anything; log-in errors
//! are generic and log-in attempts are limited.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::network::CookieSameSite;
use chromiumoxide::cdp::browser_protocol::page::{CaptureScreenshotFormat, Viewport};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockGuard, MockServer, ResponseTemplate};

use crate::payments::{
    self, checkout_response, code, deliver, expect_checkout, json_of, paid, polar, polar_signer,
    OrderSpec,
};
use crate::support::{audited, client_with_key, enc, page, TestBrowser};

/// How long any one page may take to become ready (a bound on waiting, not an assertion).
const READY_LIMIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse battery";

/// Where the journey's screenshots go.
fn screens_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screens")
}

/// A JavaScript literal for `value`.
fn lit(value: &str) -> String {
    serde_json::to_string(value).expect("string literal")
}

/// Real Chromium with one page, driving the dashboard of the daemon at `base`.
struct Dash {
    chromium: TestBrowser,
    page: Page,
    base: String,
    shots: AtomicU32,
}

impl Dash {
    /// Chromium with a blank page at 1280×800.
    async fn open(base: &str) -> Dash {
        let chromium = TestBrowser::launch("dashboard").await;
        let page = chromium.page("about:blank").await;
        let dash = Dash {
            chromium,
            page,
            base: base.to_string(),
            shots: AtomicU32::new(0),
        };
        dash.viewport(1280, 800, false).await;
        dash
    }

    async fn viewport(&self, width: i64, height: i64, mobile: bool) {
        self.page
            .execute(
                SetDeviceMetricsOverrideParams::builder()
                    .width(width)
                    .height(height)
                    .device_scale_factor(1.0)
                    .mobile(mobile)
                    .build()
                    .expect("metrics"),
            )
            .await
            .expect("set the viewport");
    }

    /// Evaluates `expr` (promises awaited) and returns its value, or the evaluation's error.
    async fn try_js<T: DeserializeOwned>(&self, expr: &str) -> Result<T, String> {
        let evaluated = tokio::time::timeout(
            Duration::from_secs(30),
            self.page.evaluate_expression(
                EvaluateParams::builder()
                    .expression(expr)
                    .await_promise(true)
                    .return_by_value(true)
                    .build()
                    .expect("params"),
            ),
        )
        .await
        .map_err(|_| format!("`{expr}` did not finish in 30 s"))?
        .map_err(|e| e.to_string())?;
        evaluated.into_value::<T>().map_err(|e| e.to_string())
    }

    async fn js<T: DeserializeOwned>(&self, expr: &str) -> T {
        self.try_js(expr)
            .await
            .unwrap_or_else(|e| panic!("evaluating `{expr}`: {e}"))
    }

    /// Loads `path` on the daemon's origin (a full page load).
    async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        tokio::time::timeout(Duration::from_secs(30), self.page.goto(url.as_str()))
            .await
            .unwrap_or_else(|_| panic!("{url} did not load in 30 s"))
            .unwrap_or_else(|e| panic!("loading {url}: {e}"));
    }

    /// Polls the JavaScript condition `expr` every 100 ms for up to 20 s.
    async fn until(&self, expr: &str) -> bool {
        let start = Instant::now();
        loop {
            if self.try_js::<bool>(expr).await == Ok(true) {
                return true;
            }
            if start.elapsed() > READY_LIMIT {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until page `name` has loaded its data (the front end's `data-page`/`data-ready`).
    async fn wait_ready(&self, name: &str) {
        let ready = format!(
            "document.body.dataset.page === {} && document.body.dataset.ready === '1'",
            lit(name)
        );
        if !self.until(&ready).await {
            let now: Value = self
                .try_js(
                    "({url: location.href, page: document.body.dataset.page ?? null, \
                      ready: document.body.dataset.ready ?? null, \
                      status: document.getElementById('status')?.textContent ?? null})",
                )
                .await
                .unwrap_or(Value::Null);
            panic!("page {name} was not ready within {READY_LIMIT:?}; the browser shows {now}");
        }
    }

    /// Sets an input's or select's value as typing would, and checks it took.
    async fn fill(&self, selector: &str, value: &str) {
        let took: bool = self
            .js(&format!(
                "(() => {{ const el = document.querySelector({}); if (!el) return false;
                   el.value = {};
                   el.dispatchEvent(new Event('input', {{bubbles: true}}));
                   el.dispatchEvent(new Event('change', {{bubbles: true}}));
                   return el.value === {}; }})()",
                lit(selector),
                lit(value),
                lit(value)
            ))
            .await;
        assert!(took, "{selector} exists and takes the value {value:?}");
    }

    async fn check(&self, selector: &str, on: bool) {
        let took: bool = self
            .js(&format!(
                "(() => {{ const el = document.querySelector({}); if (!el) return false;
                   el.checked = {on};
                   el.dispatchEvent(new Event('input', {{bubbles: true}}));
                   el.dispatchEvent(new Event('change', {{bubbles: true}}));
                   return el.checked === {on}; }})()",
                lit(selector)
            ))
            .await;
        assert!(took, "{selector} exists and is checkable");
    }

    async fn click(&self, selector: &str) {
        let found: bool = self
            .js(&format!(
                "(() => {{ const el = document.querySelector({}); if (!el) return false; el.click(); return true; }})()",
                lit(selector)
            ))
            .await;
        assert!(found, "{selector} exists to be clicked");
    }

    /// Clicks a nav link and waits for its page.
    async fn nav(&self, name: &str) {
        self.click(&format!("#nav-{name}")).await;
        self.wait_ready(name).await;
    }

    /// The trimmed text of the element (which must exist).
    async fn text(&self, selector: &str) -> String {
        let text: Option<String> = self
            .js(&format!(
                "document.querySelector({})?.textContent.trim() ?? null",
                lit(selector)
            ))
            .await;
        text.unwrap_or_else(|| panic!("{selector} exists"))
    }

    /// True when the element exists and takes up room on the page.
    async fn visible(&self, selector: &str) -> bool {
        self.js(&format!(
            "(el => !!el && el.getClientRects().length > 0)(document.querySelector({}))",
            lit(selector)
        ))
        .await
    }

    async fn count(&self, selector: &str) -> usize {
        self.js(&format!(
            "document.querySelectorAll({}).length",
            lit(selector)
        ))
        .await
    }

    async fn path(&self) -> String {
        self.js("location.pathname + location.search").await
    }

    /// Saves the whole page (the viewport's width, the document's height) as the next numbered
    /// PNG in `target/dashboard-screens/`.
    async fn shot(&self, name: &str) {
        let n = self.shots.fetch_add(1, Ordering::Relaxed) + 1;
        let (width, height): (f64, f64) = self
            .js("[document.documentElement.clientWidth, Math.ceil(document.documentElement.scrollHeight)]")
            .await;
        let params = ScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .capture_beyond_viewport(true)
            .clip(Viewport {
                x: 0.0,
                y: 0.0,
                width,
                height,
                scale: 1.0,
            })
            .build();
        let file = screens_dir().join(format!("{n:02}-{name}.png"));
        tokio::time::timeout(
            Duration::from_secs(30),
            self.page.save_screenshot(params, &file),
        )
        .await
        .unwrap_or_else(|_| panic!("screenshot {name} in 30 s"))
        .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    }

    /// The `session` cookie the browser holds for the daemon (set by the real log-in).
    async fn session(&self) -> chromiumoxide::cdp::browser_protocol::network::Cookie {
        self.page
            .get_cookies()
            .await
            .expect("cookies")
            .into_iter()
            .find(|c| c.name == "session")
            .expect("the browser holds a session cookie")
    }

    async fn close(self) {
        drop(self.page);
        self.chromium.close().await;
    }
}

/// A loopback server standing in for Polar's checkout page (and for any other site).
async fn site_serving(html: String) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(html.into_bytes(), "text/html; charset=utf-8"),
        )
        .mount(&server)
        .await;
    server
}

/// Polar answers the next checkout of `account` (once) with a URL on `landing`.
async fn checkout_on(
    account: &str,
    email: &str,
    landing: &MockServer,
    name: &str,
) -> (String, MockGuard) {
    let (url, mut body) = checkout_response(account, email, "pack_pro", true);
    let secret = url.rsplit('/').next().expect("client secret").to_string();
    let url = format!("{}/checkout/{secret}", landing.uri());
    body["url"] = Value::String(url.clone());
    let guard = expect_checkout(
        account,
        ResponseTemplate::new(201).set_body_json(body),
        name,
    )
    .await;
    (url, guard)
}

/// A signed `order.paid` for one `pack_id` bought from the auto top-up prompt.
async fn deliver_auto_topup_order(account: &str, pack_id: &str) -> (u16, Value) {
    // `OrderSpec`'s flag is private to the payments tests: set it in the event instead.
    let mut event: Value =
        serde_json::from_str(&paid(&OrderSpec::new(account, pack_id))).expect("event JSON");
    event["data"]["metadata"]["auto_topup"] = Value::Bool(true);
    deliver(&polar_signer().deliver(&event.to_string())).await
}

/// `POST /api/v1/auth/signup` from Rust; the new account's id.
async fn sign_up(base: &str, email: &str) -> String {
    let (status, body) = json_of(
        reqwest::Client::new()
            .post(format!("{base}/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("signup"),
    )
    .await;
    assert_eq!(status, 201, "sign-up of {email}: {body}");
    body["id"].as_str().expect("account id").to_string()
}

fn fresh_email(tag: &str) -> String {
    format!("{tag}{}@test.example", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn a_customer_signs_up_captures_buys_and_sees_every_page() {
    let base = format!("http://{}", payments::daemon().bound.api);
    let landing = site_serving(
        "<!doctype html><title>Polar checkout</title><h1>Polar checkout (stand-in)</h1>".into(),
    )
    .await;
    let dir = screens_dir();
    std::fs::create_dir_all(&dir).expect("screens dir");
    for old in std::fs::read_dir(&dir).expect("screens dir").flatten() {
        if old.path().extension().is_some_and(|e| e == "png") {
            let _ = std::fs::remove_file(old.path());
        }
    }
    let email = fresh_email("d");
    let dash = Dash::open(&base).await;

    // Signed out, the dashboard is the log-in page.
    dash.goto("/dashboard").await;
    dash.wait_ready("login").await;
    assert_eq!(dash.path().await, "/dashboard/login");
    assert!(!dash.visible("#nav").await, "no navigation when signed out");
    dash.shot("login").await;

    // Sign up: 5 free credits.
    dash.click("#to-signup").await;
    dash.wait_ready("signup").await;
    dash.fill("#signup-email", &email).await;
    dash.fill("#signup-password", PASSWORD).await;
    dash.shot("signup").await;
    dash.click("#signup-submit").await;
    dash.wait_ready("credits").await;
    assert_eq!(dash.path().await, "/dashboard/credits");
    assert_eq!(dash.text("#balance").await, "5");
    assert_eq!(dash.text("#user-email").await, email);
    assert_eq!(
        dash.count("#packs button[data-pack-id]").await,
        4,
        "every pack can be bought"
    );
    dash.shot("credits-new-account").await;

    // An API key, shown once, that really works.
    dash.nav("keys").await;
    assert_eq!(dash.count("#keys-table tr.key-row").await, 0);
    dash.fill("#key-name", "e2e key").await;
    dash.click("#key-create").await;
    dash.wait_ready("keys").await;
    let secret = dash.text("#new-key-secret").await;
    assert!(secret.starts_with("sk_"), "a key secret: {secret:?}");
    assert!(dash.visible("#new-key").await);
    assert_eq!(dash.count("#keys-table tr.key-row").await, 1);
    assert_eq!(dash.text("#keys-table tr.key-row .c-name").await, "e2e key");
    dash.shot("keys-created").await;
    let (status, me) = json_of(
        client_with_key(&secret)
            .get(format!("{base}/api/v1/me"))
            .send()
            .await
            .expect("me"),
    )
    .await;
    assert_eq!(status, 200, "the new key authenticates: {me}");
    assert_eq!(me["email"], email.as_str());
    let account = me["id"].as_str().expect("account id").to_string();

    // The key's signing secret for signed links: made and shown once, then replaced and revoked,
    // each of those two asked first.
    let row = "#keys-table tr.key-row";
    assert_eq!(dash.text(&format!("{row} .signing-state")).await, "None");
    dash.click(&format!("{row} .signing-make")).await;
    assert!(
        dash.until("!document.getElementById('new-signing').hidden")
            .await,
        "the signing secret is shown"
    );
    let first = dash.text("#new-signing-secret").await;
    assert!(first.starts_with("lsk_"), "a signing secret: {first:?}");
    let key_id = dash.text("#new-signing-key-id").await;
    assert!(key_id.starts_with("key_"), "{key_id:?}");
    assert!(dash
        .text(&format!("{row} .signing-state"))
        .await
        .starts_with("Since"));
    dash.shot("keys-signing-secret").await;
    dash.click(&format!("{row} .signing-ask-rotate")).await;
    dash.click(&format!("{row} .confirm .signing-make")).await;
    assert!(
        dash.until(&format!(
            "(t => t.startsWith('lsk_') && t !== {})(document.getElementById('new-signing-secret').textContent)",
            lit(&first)
        ))
        .await,
        "a new secret replaces the first"
    );
    let signing = dash.text("#new-signing-secret").await;
    // The secret shown is the key's: a link it signs checks out (expired, so it costs nothing);
    // the replaced one's does not.
    let expired_link = |secret: &str| {
        use hmac::Mac as _;
        let part = format!("url={}&key_id={key_id}&expires=1", enc(&page("/plain")));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(part.as_bytes());
        format!(
            "{base}/api/v1/screenshot?{part}&signature={}",
            hex::encode(mac.finalize().into_bytes())
        )
    };
    let code_of = async |url: String| {
        let (status, body) = json_of(reqwest::get(url).await.expect("link")).await;
        (
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    assert_eq!(
        code_of(expired_link(&signing)).await,
        (403, "signature_expired".to_string())
    );
    assert_eq!(
        code_of(expired_link(&first)).await,
        (403, "invalid_signature".to_string())
    );
    dash.click(&format!("{row} .signing-ask-revoke")).await;
    dash.click(&format!("{row} .signing-revoke")).await;
    assert!(
        dash.until(&format!(
            "document.querySelector({})?.textContent === 'None'",
            lit(&format!("{row} .signing-state"))
        ))
        .await,
        "the secret is revoked"
    );
    assert!(!dash.visible("#new-signing").await);
    assert_eq!(
        code_of(expired_link(&signing)).await,
        (403, "invalid_signature".to_string())
    );

    // The playground captures the fixture page for one credit.
    let fixture = page("/plain");
    dash.nav("playground").await;
    dash.fill("#pg-url", &fixture).await;
    dash.fill("#pg-width", "400").await;
    dash.fill("#pg-height", "300").await;
    dash.click("#pg-submit").await;
    dash.wait_ready("playground").await;
    let loaded = dash
        .until(
            "(i => !i.hidden && i.complete && i.naturalWidth > 0)(document.getElementById('pg-image'))",
        )
        .await;
    assert!(
        loaded,
        "the capture shows as an image (status: {:?}, placeholder: {:?})",
        dash.text("#status").await,
        dash.text("#pg-placeholder").await
    );
    let size: (u32, u32) = dash
        .js("(i => [i.naturalWidth, i.naturalHeight])(document.getElementById('pg-image'))")
        .await;
    assert_eq!(size, (400, 300), "the image has the size asked for");
    let cost = dash.text("#pg-cost").await;
    assert!(cost.contains('4'), "4 credits left: {cost:?}");
    let curl = dash.text("#pg-curl").await;
    assert!(curl.contains("/api/v1/screenshot?"), "{curl}");
    assert!(curl.contains(&format!("url={}", enc(&fixture))), "{curl}");
    assert!(
        curl.contains(&format!("{base}/api/v1/screenshot?")),
        "{curl}"
    );
    dash.shot("playground-captured").await;
    // The less common options are there too, folded away; what is set shows in the command.
    dash.click("#pg-more summary").await;
    dash.click("#pg-block-ads").await;
    dash.fill("#pg-timezone", "Europe/Berlin").await;
    dash.click("#pg-cache").await;
    dash.fill("#pg-cache-ttl", "3600").await;
    let curl = dash.text("#pg-curl").await;
    assert!(curl.contains("block_ads=true"), "{curl}");
    assert!(curl.contains("timezone=Europe%2FBerlin"), "{curl}");
    assert!(
        curl.contains("cache=true") && curl.contains("cache_ttl=3600"),
        "{curl}"
    );
    dash.shot("playground-more-options").await;
    dash.click("#pg-block-ads").await;
    dash.fill("#pg-timezone", "").await;
    dash.click("#pg-cache").await;
    dash.fill("#pg-cache-ttl", "").await;

    // The credits page shows the capture; the type filter narrows the history.
    dash.nav("credits").await;
    assert_eq!(dash.text("#balance").await, "4");
    assert_eq!(
        dash.count(r#"#tx-table tr.tx-row[data-type="usage"]"#)
            .await,
        1
    );
    assert_eq!(dash.count("#tx-table tr.tx-row").await, 2);
    assert!(!dash.visible("#low-banner").await, "no auto top-up yet");
    dash.fill("#tx-type", "signup_bonus").await;
    dash.wait_ready("credits").await;
    let types: Vec<String> = dash
        .js("Array.from(document.querySelectorAll('#tx-table tr.tx-row'), r => r.dataset.type)")
        .await;
    assert_eq!(types, ["signup_bonus"]);
    dash.shot("credits-filtered").await;

    // Settings: auto top-up above the balance, and a notification URL with its secret.
    dash.nav("settings").await;
    assert_eq!(dash.text("#account-email").await, email);
    assert!(!dash.visible("#notify-secret-block").await);
    dash.check("#topup-enabled", true).await;
    dash.fill("#topup-threshold", "10").await;
    dash.fill("#topup-pack", "pack_pro").await;
    dash.fill("#notify-url", "http://127.0.0.1:9/hook").await;
    dash.click("#topup-save").await;
    dash.wait_ready("settings").await;
    let notify_secret = dash.text("#notify-secret").await;
    assert!(
        notify_secret.starts_with("whsec_"),
        "a signing secret: {notify_secret:?} (status: {:?})",
        dash.text("#status").await
    );
    assert!(dash.visible("#notify-secret-block").await);
    let (status, settings) = json_of(
        client_with_key(&secret)
            .get(format!("{base}/api/v1/credits/auto-topup"))
            .send()
            .await
            .expect("settings"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(settings["enabled"], true, "{settings}");
    assert_eq!(settings["threshold"], 10, "{settings}");
    assert_eq!(settings["packId"], "pack_pro", "{settings}");
    dash.shot("settings-saved").await;

    // Below the threshold, the credits page prompts to buy the Pro pack.
    dash.nav("credits").await;
    assert!(dash.visible("#low-banner").await, "the low-balance banner");
    let banner = dash.text("#low-banner-text").await;
    assert!(banner.contains("Pro"), "{banner}");
    let summary = dash.text("#topup-summary").await;
    assert!(summary.starts_with("On"), "{summary}");
    dash.shot("credits-low-balance").await;

    // Buying from the banner leaves for Polar's checkout, marked as an auto top-up.
    let (checkout_url, guard) = checkout_on(&account, &email, &landing, "dashboard banner").await;
    dash.click("#low-banner-buy").await;
    let landed = dash
        .until(&format!("location.href === {}", lit(&checkout_url)))
        .await;
    assert!(
        landed,
        "the browser went to {checkout_url}; it is at {:?}",
        dash.try_js::<String>("location.href").await
    );
    assert_eq!(dash.js::<String>("document.title").await, "Polar checkout");
    dash.shot("polar-checkout").await;
    let asked = guard.received_requests().await;
    assert_eq!(asked.len(), 1, "one checkout");
    let sent: Value = serde_json::from_slice(&asked[0].body).expect("checkout JSON");
    assert_eq!(sent["metadata"]["auto_topup"], true, "{sent}");
    assert_eq!(sent["metadata"]["pack_id"], "pack_pro", "{sent}");
    drop(guard);

    // Polar says the order is paid; back on the dashboard the pack is there.
    let (status, answer) = deliver_auto_topup_order(&account, "pack_pro").await;
    assert_eq!(status, 200, "{answer}");
    dash.goto("/dashboard/credits?checkout=success").await;
    dash.wait_ready("credits").await;
    assert_eq!(dash.text("#balance").await, "1004");
    assert!(dash.visible("#checkout-notice").await);
    assert!(
        !dash.visible("#low-banner").await,
        "no prompt above the threshold"
    );
    assert_eq!(
        dash.count(r#"#tx-table tr.tx-row[data-type="auto_topup"]"#)
            .await,
        1
    );
    dash.shot("credits-after-purchase").await;

    // Usage: one capture, a bar per day for 30 days.
    dash.nav("usage").await;
    assert_eq!(dash.text("#usage-total").await, "1");
    assert_eq!(
        dash.text("#usage-total-label").await,
        "capture in the last 30 days"
    );
    assert_eq!(
        dash.js::<String>("document.getElementById('usage-chart').tagName")
            .await,
        "svg"
    );
    assert_eq!(dash.count("#usage-chart rect.bar").await, 30);
    assert_eq!(dash.count("#usage-table tbody tr").await, 30);
    assert!(!dash.visible("#usage-empty").await);
    dash.shot("usage").await;

    // Log out, then back in.
    dash.click("#logout").await;
    dash.wait_ready("login").await;
    assert_eq!(dash.path().await, "/dashboard/login");
    assert!(!dash.visible("#nav").await);
    dash.shot("logged-out").await;
    dash.fill("#login-email", &email).await;
    dash.fill("#login-password", PASSWORD).await;
    dash.click("#login-submit").await;
    dash.wait_ready("credits").await;
    assert_eq!(dash.text("#balance").await, "1004");
    dash.shot("logged-in-again").await;

    // The main pages on a phone: nothing wider than the screen.
    dash.viewport(390, 844, true).await;
    for name in ["credits", "settings", "keys", "playground", "usage"] {
        dash.goto(&format!("/dashboard/{name}")).await;
        dash.wait_ready(name).await;
        let width: f64 = dash.js("document.documentElement.scrollWidth").await;
        assert!(
            width <= 390.0,
            "{name} is {width} px wide on a 390 px phone"
        );
        dash.shot(&format!("mobile-{name}")).await;
    }
    dash.click("#logout").await;
    dash.wait_ready("login").await;
    dash.shot("mobile-login").await;
    dash.close().await;

    let ledger = audited(&account).await;
    assert_eq!(ledger.balance.available, 1004);
}

#[tokio::test]
async fn a_cross_site_page_cannot_change_anything() {
    let daemon = payments::daemon();
    let base = format!("http://{}", daemon.bound.api);
    let email = fresh_email("x");
    let account = sign_up(&base, &email).await;

    // Log in through the dashboard: the session cookie comes from the real log-in.
    let dash = Dash::open(&base).await;
    dash.goto("/dashboard/login").await;
    dash.wait_ready("login").await;
    dash.fill("#login-email", &email).await;
    dash.fill("#login-password", PASSWORD).await;
    dash.click("#login-submit").await;
    dash.wait_ready("credits").await;
    let cookie = dash.session().await;
    assert!(cookie.http_only, "the session cookie is HttpOnly");
    assert_eq!(cookie.same_site, Some(CookieSameSite::Strict));
    let session = format!("session={}", cookie.value);

    // A page on another origin (same host, another port: same site, so even a SameSite=Strict
    // cookie goes along) tries three state changes with fetch and one with a form.
    let html = format!(
        r#"<!doctype html><title>evil</title>
        <form id=f method=POST action="{base}/api/v1/auth/logout" enctype="text/plain">
          <input name=x value=y></form>
        <script>
        (async () => {{
          const tries = [['/api/v1/keys', '{{"name":"evil"}}'],
                         ['/api/v1/credits/purchase', '{{"packId":"pack_pro"}}'],
                         ['/api/v1/auth/logout', '']];
          const results = [];
          for (const [path, body] of tries) {{
            try {{
              await fetch('{base}' + path, {{method: 'POST', mode: 'no-cors', credentials: 'include',
                headers: {{'Content-Type': 'text/plain'}}, body}});
              results.push('answered');
            }} catch (e) {{ results.push('failed: ' + e); }}
          }}
          await fetch('/report?' + encodeURIComponent(JSON.stringify(results)));
          document.getElementById('f').submit();
        }})();
        </script>"#
    );
    let evil = site_serving(html).await;
    assert_ne!(evil.uri(), base, "another origin");
    tokio::time::timeout(
        Duration::from_secs(30),
        dash.page.goto(format!("{}/prize", evil.uri())),
    )
    .await
    .expect("the other site loads in time")
    .expect("the other site loads");
    // The form's POST is a navigation to the daemon: its answer is the refusal.
    let logout_url = format!("{base}/api/v1/auth/logout");
    let refused = dash
        .until(&format!(
            "location.href === {} && document.body.textContent.includes('cross_site_request')",
            lit(&logout_url)
        ))
        .await;
    let shown = dash
        .try_js::<String>("location.href + ' ' + document.body.textContent")
        .await;
    dash.close().await;
    let reports: Vec<String> = evil
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/report")
        .filter_map(|r| r.url.query().map(str::to_string))
        .collect();
    let reported: Vec<Value> = reports
        .iter()
        .map(|q| {
            let text = form_urlencoded::parse(format!("r={q}").as_bytes())
                .next()
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            serde_json::from_str(&text).expect("the report is JSON")
        })
        .collect();
    assert_eq!(
        reported,
        [json!(["answered", "answered", "answered"])],
        "the other site's three requests reached the daemon and were answered"
    );
    assert!(
        refused,
        "the cross-site form was refused by the origin check: {shown:?}"
    );

    let http = reqwest::Client::new();
    let with_cookie = |request: reqwest::RequestBuilder| request.header("cookie", &session);
    // Still logged in, still no key, no checkout asked of Polar.
    let (status, me) = json_of(
        with_cookie(http.get(format!("{base}/api/v1/me")))
            .send()
            .await
            .expect("me"),
    )
    .await;
    assert_eq!(
        status, 200,
        "the session survived the cross-site log-out: {me}"
    );
    assert_eq!(me["id"], account.as_str());
    let keys = async || {
        let (status, body) = json_of(
            with_cookie(http.get(format!("{base}/api/v1/keys")))
                .send()
                .await
                .expect("keys"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["keys"].as_array().expect("keys").len()
    };
    assert_eq!(keys().await, 0, "no key was made from the other site");
    let checkouts = polar()
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .is_ok_and(|b| b["external_customer_id"] == account.as_str())
        })
        .count();
    assert_eq!(checkouts, 0, "no checkout was started from the other site");

    // The origin check itself, with the cookie in hand.
    let post_key = async |origin: &str| {
        json_of(
            with_cookie(http.post(format!("{base}/api/v1/keys")))
                .header("origin", origin)
                .header("content-type", "application/json")
                .body(r#"{"name":"direct"}"#)
                .send()
                .await
                .expect("create key"),
        )
        .await
    };
    let (status, body) = post_key("http://evil.example").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), Some("cross_site_request"), "{body}");
    assert_eq!(keys().await, 0);
    let (status, body) = post_key(&base).await;
    assert_eq!(status, 201, "our own origin may: {body}");
    assert_eq!(keys().await, 1);
}

#[tokio::test]
async fn login_is_rate_limited_and_errors_are_generic() {
    let base = format!("http://{}", payments::daemon().bound.api);
    let email = fresh_email("r");
    sign_up(&base, &email).await;
    let http = reqwest::Client::new();
    let login = async |email: &str, password: &str| {
        let response = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login");
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (status, body) = json_of(response).await;
        (status, body, retry_after)
    };

    // A wrong password and an unknown email look the same.
    let (wrong_status, wrong, _) = login(&email, "not the password").await;
    let (unknown_status, unknown, _) = login(&fresh_email("nobody"), PASSWORD).await;
    assert_eq!(wrong_status, 401, "{wrong}");
    assert_eq!(unknown_status, 401, "{unknown}");
    assert_eq!(code(&wrong), Some("invalid_credentials"), "{wrong}");
    assert_eq!(code(&unknown), Some("invalid_credentials"), "{unknown}");
    assert_eq!(wrong["error"]["message"], unknown["error"]["message"]);
    assert!(wrong["error"]["message"].is_string(), "{wrong}");

    // Forty tries at one email at once: the limit (10 a minute, checked before the password)
    // lets at most 10 through to the password check and answers the rest 429 with Retry-After.
    // Sent concurrently, so a slow machine cannot regenerate tokens between them.
    // While limited, even the right password is refused (nothing is learned from it): it is
    // tried as soon as the first refusal shows the bucket empty, before the checked tries end.
    let mut pending: futures::stream::FuturesUnordered<_> =
        (0..40).map(|_| login(&email, "guess again")).collect();
    let mut answers = Vec::new();
    let mut right = None;
    while let Some(answer) = futures::StreamExt::next(&mut pending).await {
        if answer.0 == 429 && right.is_none() {
            right = Some(login(&email, PASSWORD).await);
        }
        answers.push(answer);
    }
    let (status, body, retry_after) = right.expect("some try was limited");
    assert_eq!(status, 429, "{body}");
    assert_eq!(code(&body), Some("rate_limited"), "{body}");
    assert!(retry_after.is_some());
    let limited = answers.iter().filter(|(s, _, _)| *s == 429).count();
    assert!(
        (30..40).contains(&limited),
        "9 or 10 checked (one try went before), the rest limited: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (status, body, retry_after) in &answers {
        match status {
            401 => assert_eq!(code(body), Some("invalid_credentials"), "{body}"),
            429 => {
                assert_eq!(code(body), Some("rate_limited"), "{body}");
                let secs: u64 = retry_after
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("Retry-After in seconds: {retry_after:?}"));
                assert!(secs >= 1, "Retry-After {secs}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
}
