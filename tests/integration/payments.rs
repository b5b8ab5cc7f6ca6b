//! Buying credits through Polar, against the real daemon and a wiremock stand-in for Polar's API
//! on loopback: checkouts (the exact request we send, and every way Polar can fail us), webhooks
//! signed here with Standard Webhooks signatures computed independently of the daemon (our own
//! HMAC-SHA256 over `sha2`), orders credited exactly once, refunds, and the auto top-up prompt.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures::future::join_all;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shotfarm::config::{PolarServer, WebhookSecretFormat};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockGuard, MockServer, Request, ResponseTemplate};

use crate::redis_server::start_redis;
use crate::support::{
    amounts_of, audited, audited_on, client_with_key, credits_header, enc, free_port, on_own_redis,
    page, provision_as, redis_url, Daemon, Funded,
};

pub(crate) const TOKEN: &str = "polar_oat_test";
/// The webhook secret as Polar's dashboard shows it (its bytes are the HMAC key).
pub(crate) const POLAR_SECRET: &str = "polar_whs_q8Vd3kTz0LmN5xR2bWc7YhJf4GsPa9Ue6iKoXtB1";
/// A Standard Webhooks secret: `whsec_` + base64 of the key.
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STARTER_PRODUCT: &str = "0b5d2c0e-3c1f-4a4e-9d55-6a1f7e2b9c01";
const PRO_PRODUCT: &str = "7f3e9a12-58c4-4d0b-b1e6-2c9d4f8a7e33";
const BUSINESS_PRODUCT: &str = "c2a81f4d-9e07-4b6a-8f3c-51d0e6b7a948";
/// A product of the organization that no pack maps to.
const STRAY_PRODUCT: &str = "e9d4b6a2-1c3f-4e8d-a7b5-0f2c9d8e6a13";
const PUBLIC_URL: &str = "https://shots.example";
/// `payments.timeout_ms` of the test daemons.
const POLAR_TIMEOUT_MS: u64 = 2_000;

/// pack id → (Polar product id, name, credits, price in cents), as the daemon's config has them.
pub(crate) fn pack(id: &str) -> (&'static str, &'static str, i64, i64) {
    match id {
        "pack_starter" => (STARTER_PRODUCT, "Starter", 100, 500),
        "pack_pro" => (PRO_PRODUCT, "Pro", 1000, 3500),
        "pack_business" => (BUSINESS_PRODUCT, "Business", 5000, 12500),
        other => panic!("no test pack {other}"),
    }
}

/// `pack_enterprise` is deliberately left without a product.
pub(crate) fn products() -> BTreeMap<String, String> {
    ["pack_starter", "pack_pro", "pack_business"]
        .into_iter()
        .map(|id| (id.to_string(), pack(id).0.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The stand-in for Polar and the daemon that talks to it.

/// The Polar stand-in the shared payments daemon talks to. Its server runs on a thread of its
/// own (wiremock's), so it outlives each test's runtime; each test mounts scoped mocks that
/// only match its own account's requests.
pub(crate) fn polar() -> &'static MockServer {
    static POLAR: OnceLock<MockServer> = OnceLock::new();
    POLAR.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("stand-in runtime")
                .block_on(MockServer::builder().start())
        })
        .join()
        .expect("Polar stand-in starts")
    })
}

/// Webhooks on: the Polar-format secret the tests sign with, and the pack → product map.
pub(crate) fn with_webhooks(c: &mut shotfarm::config::Config) {
    c.payments.webhook_secret = POLAR_SECRET.to_string();
    c.payments.webhook_secret_format = WebhookSecretFormat::Polar;
    c.payments.products = products();
}

/// A daemon with payments on: sandbox, the stand-in's URL, Polar-format webhook secret.
pub(crate) fn daemon() -> &'static Daemon {
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let uri = polar().uri();
        Daemon::start(move |c| {
            c.farm.browsers = 1;
            c.auth.public_url = PUBLIC_URL.to_string();
            c.payments.polar_server = PolarServer::Sandbox;
            c.payments.polar_api_url = uri;
            c.payments.polar_access_token = TOKEN.to_string();
            c.payments.webhook_secret = POLAR_SECRET.to_string();
            c.payments.webhook_secret_format = WebhookSecretFormat::Polar;
            c.payments.timeout_ms = POLAR_TIMEOUT_MS;
            c.payments.products = products();
        })
    })
}

/// Matches the checkout requests made for `account` only (tests share the stand-in).
fn for_account(account: &str) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    let account = account.to_string();
    move |r: &Request| {
        serde_json::from_slice::<Value>(&r.body)
            .is_ok_and(|b| b["external_customer_id"].as_str() == Some(account.as_str()))
    }
}

fn random_token(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn iso(secs_from_now: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(now_secs() + secs_from_now).expect("timestamp");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

/// Polar's `Product` object for a pack.
fn product_json(pack_id: &str) -> Value {
    let (product, name, credits, price) = pack(pack_id);
    json!({
        "id": product,
        "created_at": iso(-86_400),
        "modified_at": null,
        "trial_interval": null,
        "trial_interval_count": null,
        "name": format!("{name} credit pack"),
        "description": format!("{credits} screenshot credits"),
        "recurring_interval": null,
        "is_recurring": false,
        "is_archived": false,
        "organization_id": "4d8e2a6c-7b1f-4c3e-9a5d-0e6f8b2c1a47",
        // Misleading on purpose: what an order is worth comes from our config only.
        "metadata": {"credits": "999999"},
        "prices": [{
            "id": "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e",
            "created_at": iso(-86_400),
            "modified_at": null,
            "amount_type": "fixed",
            "is_archived": false,
            "product_id": product,
            "type": "one_time",
            "price_currency": "usd",
            "price_amount": price,
        }],
        "benefits": [],
        "medias": [],
        "attached_custom_fields": [],
    })
}

/// Polar's answer to `POST /v1/checkouts/` (201, a `Checkout`), and its URL.
pub(crate) fn checkout_response(
    account: &str,
    email: &str,
    pack_id: &str,
    auto_topup: bool,
) -> (String, Value) {
    let (product, _, _, price) = pack(pack_id);
    let client_secret = format!("polar_c_{}", random_token(48));
    let url = format!("https://sandbox.polar.sh/checkout/{client_secret}");
    let body = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "created_at": iso(0),
        "modified_at": null,
        "custom_field_data": {},
        "payment_processor": "stripe",
        "status": "open",
        "client_secret": client_secret,
        "url": url,
        "expires_at": iso(3_600),
        "success_url": format!("{PUBLIC_URL}/dashboard/credits?checkout=success"),
        "embed_origin": null,
        "amount": price,
        "discount_amount": 0,
        "net_amount": price,
        "tax_amount": null,
        "total_amount": price,
        "currency": "usd",
        "product_id": product,
        "product_price_id": "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e",
        "discount_id": null,
        "allow_discount_codes": true,
        "require_billing_address": false,
    });
    let more = json!({
        "is_discount_applicable": true,
        "is_free_product_price": false,
        "is_payment_required": true,
        "is_payment_setup_required": false,
        "is_payment_form_required": true,
        "customer_id": null,
        "is_business_customer": false,
        "customer_name": null,
        "customer_email": email,
        "customer_ip_address": null,
        "customer_billing_name": null,
        "customer_billing_address": null,
        "customer_tax_id": null,
        "payment_processor_metadata": {"publishable_key": "pk_test_51Example"},
        "billing_address_fields": {"country": "required", "state": "disabled", "city": "disabled",
            "postal_code": "disabled", "line1": "disabled", "line2": "disabled"},
        "metadata": {"account_id": account, "pack_id": pack_id, "auto_topup": auto_topup},
        "external_customer_id": account,
        "customer_external_id": account,
        "products": [product_json(pack_id)],
        "product": product_json(pack_id),
        "product_price": product_json(pack_id)["prices"][0].clone(),
        "discount": null,
        "subscription_id": null,
        "attached_custom_fields": [],
        "customer_metadata": {},
    });
    let mut body = body;
    if let (Some(all), Value::Object(rest)) = (body.as_object_mut(), more) {
        all.extend(rest);
    }
    (url, body)
}

/// Mounts a checkout answer for `account` that must be asked for exactly once.
pub(crate) async fn expect_checkout(
    account: &str,
    response: ResponseTemplate,
    name: &str,
) -> MockGuard {
    Mock::given(method("POST"))
        .and(path("/v1/checkouts/"))
        .and(for_account(account))
        .respond_with(response)
        .expect(1)
        .named(name)
        .mount_as_scoped(polar())
        .await
}

// ---------------------------------------------------------------------------------------------
// Accounts, sessions and requests.

/// An account (with an API key) on the Redis at `redis`, and a session on `daemon`.
pub(crate) struct Customer {
    pub funded: Funded,
    pub email: String,
    pub session: String,
}

async fn customer_on(daemon: &Daemon, redis: &str, credits: i64) -> Customer {
    let email = format!("p{}@test.example", uuid::Uuid::new_v4().simple());
    let funded = provision_as(redis, &email, credits);
    let response = reqwest::Client::new()
        .post(daemon.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200, "login as {email}");
    let session = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .and_then(|kv| kv.strip_prefix("session="))
        .expect("a session cookie")
        .to_string();
    Customer {
        funded,
        email,
        session,
    }
}

pub(crate) async fn customer(credits: i64) -> Customer {
    customer_on(daemon(), &redis_url(), credits).await
}

pub(crate) async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub(crate) fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

async fn purchase_on(daemon: &Daemon, session: &str, body: Value) -> (u16, Value) {
    json_of(
        reqwest::Client::new()
            .post(daemon.url("/api/v1/credits/purchase"))
            .header("cookie", format!("session={session}"))
            .json(&body)
            .send()
            .await
            .expect("purchase"),
    )
    .await
}

async fn purchase(session: &str, body: Value) -> (u16, Value) {
    purchase_on(daemon(), session, body).await
}

/// (available, number of transactions) of an account, after checking every invariant.
async fn state_of(account: &str) -> (i64, usize) {
    let s = audited(account).await;
    (s.balance.available, s.transactions.len())
}

// ---------------------------------------------------------------------------------------------
// Standard Webhooks signatures, computed here.

/// HMAC-SHA256 (RFC 2104) over `sha2`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Signs deliveries with one key.
pub(crate) struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// Polar's form: the secret's bytes are the key.
    fn polar(secret: &str) -> Signer {
        Signer {
            key: secret.as_bytes().to_vec(),
        }
    }

    /// `whsec_<base64>`: the decoded bytes are the key.
    fn standard(secret: &str) -> Signer {
        let b64 = secret.strip_prefix("whsec_").expect("whsec_ prefix");
        Signer {
            key: base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64 secret"),
        }
    }

    fn signature(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mac = hmac_sha256(&self.key, format!("{id}.{timestamp}.{body}").as_bytes());
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac)
        )
    }

    /// A delivery of `body`, signed now with a fresh webhook id.
    pub(crate) fn deliver(&self, body: &str) -> Delivery {
        self.deliver_as(&format!("msg_{}", random_token(27)), now_secs(), body)
    }

    pub(crate) fn deliver_as(&self, id: &str, timestamp: i64, body: &str) -> Delivery {
        Delivery {
            id: id.to_string(),
            timestamp: timestamp.to_string(),
            signature: self.signature(id, timestamp, body),
            body: body.to_string(),
        }
    }
}

/// One webhook request as Polar sends it.
#[derive(Clone)]
pub(crate) struct Delivery {
    pub(crate) id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// Posts `d` to the daemon's Polar endpoint, leaving out the header named in `without`.
async fn post_webhook(daemon: &Daemon, d: &Delivery, without: Option<&str>) -> (u16, Value) {
    post_webhook_at(&daemon.url(""), d, without).await
}

/// Posts `d` to the Polar endpoint of the daemon at `base` (`http://host:port`).
pub(crate) async fn deliver_to(base: &str, d: &Delivery) -> (u16, Value) {
    post_webhook_at(base, d, None).await
}

async fn post_webhook_at(base: &str, d: &Delivery, without: Option<&str>) -> (u16, Value) {
    let response = send_webhook(&reqwest::Client::new(), base, d, without)
        .await
        .expect("webhook delivery");
    json_of(response).await
}

/// Posts `d` to the Polar endpoint at `base` with `http`, leaving out the header named in
/// `without`; a lost connection is the caller's to retry, as Polar does.
pub(crate) async fn send_webhook(
    http: &reqwest::Client,
    base: &str,
    d: &Delivery,
    without: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let mut request = http
        .post(format!("{base}/api/v1/webhooks/polar"))
        .header("content-type", "application/json")
        .header("user-agent", "polar.sh webhooks")
        .body(d.body.clone());
    for (name, value) in [
        ("webhook-id", &d.id),
        ("webhook-timestamp", &d.timestamp),
        ("webhook-signature", &d.signature),
    ] {
        if without != Some(name) {
            request = request.header(name, value);
        }
    }
    request.send().await
}

pub(crate) async fn deliver(d: &Delivery) -> (u16, Value) {
    post_webhook(daemon(), d, None).await
}

pub(crate) fn polar_signer() -> Signer {
    Signer::polar(POLAR_SECRET)
}

/// An order of one pack for one account.
pub(crate) struct OrderSpec<'a> {
    pub(crate) id: String,
    account: &'a str,
    email: &'a str,
    pack_id: &'a str,
    pub(crate) auto_topup: bool,
}

impl<'a> OrderSpec<'a> {
    pub(crate) fn new(account: &'a str, pack_id: &'a str) -> OrderSpec<'a> {
        OrderSpec {
            id: uuid::Uuid::new_v4().to_string(),
            account,
            email: "buyer@test.example",
            pack_id,
            auto_topup: false,
        }
    }
}

/// Polar's `Order` object with `refunded` cents refunded so far (cumulative, as Polar reports
/// it); the whole price makes it a fully refunded order.
pub(crate) fn order_json(o: &OrderSpec<'_>, refunded: i64) -> Value {
    let (product, name, _, price) = pack(o.pack_id);
    let customer_id = "a7c3e1f9-5b2d-4e8a-9c6f-3d1b7e5a2c80";
    let head = json!({
        "id": o.id,
        "created_at": iso(-60),
        "modified_at": iso(0),
        "status": match refunded {
            0 => "paid",
            r if r < price => "partially_refunded",
            _ => "refunded",
        },
        "paid": true,
        "subtotal_amount": price,
        "discount_amount": 0,
        "net_amount": price,
        "amount": price,
        "tax_amount": 0,
        "total_amount": price,
        "applied_balance_amount": 0,
        "due_amount": 0,
        "refunded_amount": refunded,
        "refunded_tax_amount": 0,
        "currency": "usd",
        "billing_reason": "purchase",
        "billing_name": "Test Buyer",
        "billing_address": {"country": "US", "line1": null, "line2": null, "postal_code": null,
            "city": null, "state": null},
        "invoice_number": format!("POLAR-{}", random_token(8).to_uppercase()),
        "is_invoice_generated": false,
    });
    let more = json!({
        "customer_id": customer_id,
        "product_id": product,
        "discount_id": null,
        "subscription_id": null,
        "checkout_id": uuid::Uuid::new_v4().to_string(),
        "metadata": {
            "account_id": o.account,
            "pack_id": o.pack_id,
            "auto_topup": o.auto_topup,
            // Misleading on purpose: ignored.
            "credits": 1_000_000,
        },
        "custom_field_data": {},
        "platform_fee_amount": 0,
        "customer": {
            "id": customer_id,
            "created_at": iso(-120),
            "modified_at": null,
            "metadata": {},
            "external_id": o.account,
            "email": o.email,
            "email_verified": false,
            "name": "Test Buyer",
            "billing_address": null,
            "tax_id": null,
            "organization_id": "4d8e2a6c-7b1f-4c3e-9a5d-0e6f8b2c1a47",
            "deleted_at": null,
            "avatar_url": null,
        },
        "user_id": customer_id,
        "product": product_json(o.pack_id),
        "discount": null,
        "subscription": null,
        "items": [{
            "id": uuid::Uuid::new_v4().to_string(),
            "created_at": iso(-60),
            "modified_at": null,
            "label": format!("{name} credit pack"),
            "amount": price,
            "tax_amount": 0,
            "proration": false,
            "product_price_id": "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e",
        }],
    });
    let mut order = head;
    if let (Some(all), Value::Object(rest)) = (order.as_object_mut(), more) {
        all.extend(rest);
    }
    order
}

/// A webhook body `{"type", "timestamp", "data"}`.
fn event(kind: &str, data: Value) -> String {
    serde_json::to_string(&json!({"type": kind, "timestamp": iso(0), "data": data}))
        .expect("event JSON")
}

pub(crate) fn paid(o: &OrderSpec<'_>) -> String {
    event("order.paid", order_json(o, 0))
}

pub(crate) fn refunded(o: &OrderSpec<'_>) -> String {
    event("order.refunded", order_json(o, pack(o.pack_id).3))
}

/// `order.refunded` after refunds of `cents` in all so far.
fn partially_refunded(o: &OrderSpec<'_>, cents: i64) -> String {
    event("order.refunded", order_json(o, cents))
}

pub(crate) fn of_kind(s: &shotfarm::ledger::store::Snapshot, kind: &str) -> usize {
    s.transactions
        .iter()
        .filter(|t| t.kind.as_str() == kind)
        .count()
}

/// One capture of the fixture page, which must deliver an image. A capture that fails costs
/// nothing, so one the farm could not run yet (browser still starting on a loaded machine: 503
/// or 504) is tried again, at most twice.
pub(crate) async fn capture(key: &reqwest::Client) -> reqwest::Response {
    let query = format!("url={}&width=200&height=150", enc(&page("/plain")));
    let url = daemon().url(&format!("/api/v1/screenshot?{query}"));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let response = key.get(&url).send().await.expect("capture");
        let status = response.status().as_u16();
        if status == 200 {
            return response;
        }
        let body = response.text().await.unwrap_or_default();
        assert!(
            matches!(status, 503 | 504) && attempt < 3,
            "capture must succeed: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn our_hmac_and_signatures_match_published_vectors() {
    // RFC 4231, test case 2.
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // RFC 4231, test case 6 (a key longer than the block).
    assert_eq!(
        hex::encode(hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
    // The Standard Webhooks specification's example.
    assert_eq!(
        Signer::standard(STANDARD_SECRET).signature(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[tokio::test]
async fn a_purchase_answers_the_checkout_url_polar_created_for_the_pack() {
    let c = customer(5).await;
    let account = c.funded.account.clone();
    let before = state_of(&account).await;

    for (pack_id, auto_topup, body) in [
        ("pack_pro", false, json!({"packId": "pack_pro"})),
        (
            "pack_pro",
            true,
            json!({"packId": "pack_pro", "autoTopup": true}),
        ),
        ("pack_starter", false, json!({"packId": "pack_starter"})),
    ] {
        let (url, checkout) = checkout_response(&account, &c.email, pack_id, auto_topup);
        let guard = expect_checkout(
            &account,
            ResponseTemplate::new(201).set_body_json(checkout),
            &format!("checkout {pack_id} auto_topup={auto_topup}"),
        )
        .await;
        let (status, answer) = purchase(&c.session, body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, json!({ "checkoutUrl": url }));

        // Exactly what Polar was asked.
        let requests = guard.received_requests().await;
        assert_eq!(requests.len(), 1, "one checkout created");
        let r = &requests[0];
        assert_eq!(r.method.as_str(), "POST");
        assert_eq!(r.url.path(), "/v1/checkouts/");
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        assert_eq!(
            header("authorization").as_deref(),
            Some("Bearer polar_oat_test")
        );
        assert!(
            header("content-type").is_some_and(|t| t.starts_with("application/json")),
            "{:?}",
            header("content-type")
        );
        let sent: Value = serde_json::from_slice(&r.body).expect("a JSON body");
        assert_eq!(sent["products"], json!([pack(pack_id).0]), "{sent}");
        assert_eq!(
            sent["success_url"],
            format!("{PUBLIC_URL}/dashboard/credits?checkout=success"),
            "{sent}"
        );
        assert_eq!(sent["external_customer_id"], account.as_str(), "{sent}");
        assert_eq!(sent["customer_email"], c.email.as_str(), "{sent}");
        assert_eq!(
            sent["metadata"],
            json!({"account_id": account, "pack_id": pack_id, "auto_topup": auto_topup}),
            "{sent}"
        );
        drop(guard);
    }
    // A checkout alone grants nothing.
    assert_eq!(state_of(&account).await, before);
}

#[tokio::test]
async fn purchase_errors_are_clear_and_change_nothing() {
    let c = customer(5).await;
    let account = c.funded.account.clone();
    let before = state_of(&account).await;

    let (status, body) = purchase(&c.session, json!({"packId": "pack_nope"})).await;
    assert_eq!((status, code(&body)), (400, Some("unknown_pack")), "{body}");
    let (status, body) = purchase(&c.session, json!({})).await;
    assert_eq!(status, 400, "a missing packId: {body}");
    // A pack with no Polar product cannot be bought here.
    let (status, body) = purchase(&c.session, json!({"packId": "pack_enterprise"})).await;
    assert_eq!(
        (status, code(&body)),
        (503, Some("payments_not_configured")),
        "{body}"
    );

    // Purchases need a session: an API key is not enough.
    let response = client_with_key(&c.funded.key)
        .post(daemon().url("/api/v1/credits/purchase"))
        .json(&json!({"packId": "pack_pro"}))
        .send()
        .await
        .expect("purchase");
    let (status, body) = json_of(response).await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");

    // Polar fails: a 500, a created checkout without a URL, an answer slower than
    // payments.timeout_ms.
    let failures = [
        (
            "500",
            ResponseTemplate::new(500).set_body_json(
                json!({"error": "InternalServerError", "detail": "Internal server error"}),
            ),
        ),
        (
            "no url",
            ResponseTemplate::new(201).set_body_json(json!({"id": "x", "status": "open"})),
        ),
        ("too slow", {
            let (_, checkout) = checkout_response(&account, &c.email, "pack_pro", false);
            ResponseTemplate::new(201)
                .set_body_json(checkout)
                .set_delay(Duration::from_millis(POLAR_TIMEOUT_MS * 4))
        }),
    ];
    for (name, response) in failures {
        let guard = expect_checkout(&account, response, name).await;
        let (status, body) = purchase(&c.session, json!({"packId": "pack_pro"})).await;
        assert_eq!(
            (status, code(&body)),
            (502, Some("payment_provider_error")),
            "Polar {name}: {body}"
        );
        drop(guard);
        assert_eq!(state_of(&account).await, before, "after Polar {name}");
    }
    assert_eq!(state_of(&account).await, before);
}

#[tokio::test]
async fn a_daemon_without_payments_answers_503_and_refuses_webhooks() {
    let off = Daemon::start(|c| c.farm.browsers = 1);
    let c = customer_on(&off, &redis_url(), 5).await;
    let before = state_of(&c.funded.account).await;
    let (status, body) = purchase_on(&off, &c.session, json!({"packId": "pack_pro"})).await;
    assert_eq!(
        (status, code(&body)),
        (503, Some("payments_not_configured")),
        "{body}"
    );
    let (status, body) = purchase_on(&off, &c.session, json!({"packId": "pack_nope"})).await;
    assert_eq!((status, code(&body)), (400, Some("unknown_pack")), "{body}");
    // No webhook secret: every delivery is refused, even one signed with some key.
    let order = OrderSpec::new(&c.funded.account, "pack_pro");
    let (status, body) = post_webhook(&off, &polar_signer().deliver(&paid(&order)), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(state_of(&c.funded.account).await, before);
    off.stop();
}

#[tokio::test]
async fn polar_server_off_means_no_checkout_even_with_an_api_url_and_token() {
    // `polar_server = "off"`: "POST /credits/purchase answers 503 payments_not_configured" —
    // also when an operator left an API URL override and a token in place.
    let guard = Mock::given(method("POST"))
        .and(path("/v1/checkouts/"))
        .and(for_account("acct_off_check"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            checkout_response("acct_off_check", "off@test.example", "pack_pro", false).1,
        ))
        .expect(0)
        .named("no checkout while payments are off")
        .mount_as_scoped(polar())
        .await;
    let mut config = shotfarm::config::Config::default();
    config.payments.polar_server = PolarServer::Off;
    config.payments.polar_api_url = polar().uri();
    config.payments.polar_access_token = TOKEN.to_string();
    config.payments.products = products();
    let payments = shotfarm::payments::Payments::new(&config).expect("payments");
    let result = payments
        .checkout("acct_off_check", "off@test.example", "pack_pro", false)
        .await;
    assert!(
        matches!(
            result,
            Err(shotfarm::payments::PaymentsError::NotConfigured)
        ),
        "{result:?}"
    );
    drop(guard);
}

#[tokio::test]
async fn a_signed_order_paid_credits_the_pack_from_our_config_exactly_once() {
    let c = customer(7).await;
    let account = c.funded.account.clone();
    let signer = polar_signer();

    let order = OrderSpec::new(&account, "pack_pro");
    let first = signer.deliver(&paid(&order));
    let (status, body) = deliver(&first).await;
    assert_eq!((status, &body), (200, &json!({"received": true})));
    let s = audited(&account).await;
    assert_eq!(
        s.balance.available, 1007,
        "Pro is 1000 credits in our config"
    );
    assert_eq!(of_kind(&s, "purchase"), 1);
    let t = &s.transactions[0];
    assert_eq!((t.kind.as_str(), t.amount), ("purchase", 1000));
    assert!(t.description.contains("Pro"), "{}", t.description);
    assert_eq!(t.balance_after, 1007);

    // Polar retries the same delivery; then re-sends the order under a new webhook id.
    let (status, _) = deliver(&first).await;
    assert_eq!(status, 200, "a duplicate is acknowledged");
    let (status, _) = deliver(&signer.deliver(&paid(&order))).await;
    assert_eq!(status, 200, "the same order again is acknowledged");
    let s = audited(&account).await;
    assert_eq!(s.balance.available, 1007, "credited once");
    assert_eq!(of_kind(&s, "purchase"), 1);

    // From the low-balance prompt: an `auto_topup` transaction.
    let mut topup = OrderSpec::new(&account, "pack_starter");
    topup.auto_topup = true;
    let (status, body) = deliver(&signer.deliver(&paid(&topup))).await;
    assert_eq!(status, 200, "{body}");
    let s = audited(&account).await;
    assert_eq!(s.balance.available, 1107);
    let t = &s.transactions[0];
    assert_eq!((t.kind.as_str(), t.amount), ("auto_topup", 100));
    assert!(t.description.contains("Starter"), "{}", t.description);
    assert_eq!((of_kind(&s, "purchase"), of_kind(&s, "auto_topup")), (1, 1));
}

#[tokio::test]
async fn forged_stale_and_unsigned_deliveries_are_refused() {
    let c = customer(7).await;
    let account = c.funded.account.clone();
    let before = state_of(&account).await;
    let order = OrderSpec::new(&account, "pack_pro");
    let body = paid(&order);
    let good = polar_signer().deliver(&body);

    let refused = |what: &'static str, status: u16, reply: &Value| {
        assert_eq!(
            (status, code(reply)),
            (401, Some("invalid_signature")),
            "{what}: {reply}"
        );
    };
    // The body changed after signing (a bigger pack).
    let mut tampered = good.clone();
    tampered.body = body.replace(PRO_PRODUCT, BUSINESS_PRODUCT);
    assert_ne!(tampered.body, body);
    let (status, reply) = deliver(&tampered).await;
    refused("tampered body", status, &reply);
    // Another id than the one signed.
    let mut other_id = good.clone();
    other_id.id = format!("msg_{}", random_token(27));
    let (status, reply) = deliver(&other_id).await;
    refused("webhook-id not the signed one", status, &reply);
    // Signed with another secret; and with the right secret read as Standard base64.
    let (status, reply) = deliver(&Signer::polar("polar_whs_not_the_secret").deliver(&body)).await;
    refused("wrong secret", status, &reply);
    // Older or newer than 5 minutes.
    for (what, offset) in [("stale", -6 * 60), ("from the future", 6 * 60)] {
        let d = polar_signer().deliver_as(
            &format!("msg_{}", random_token(27)),
            now_secs() + offset,
            &body,
        );
        let (status, reply) = deliver(&d).await;
        refused(what, status, &reply);
    }
    // A header missing.
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let (status, reply) = post_webhook(daemon(), &good, Some(name)).await;
        assert_eq!(status, 401, "without {name}: {reply}");
    }
    // A signature of another version, or garbage.
    for signature in ["v2,abc", "garbage", ""] {
        let mut d = good.clone();
        d.signature = signature.to_string();
        let (status, reply) = deliver(&d).await;
        assert_eq!(status, 401, "signature {signature:?}: {reply}");
    }
    assert_eq!(state_of(&account).await, before, "nothing changed");

    // The genuine delivery of the same body still credits.
    let (status, reply) = deliver(&good).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(state_of(&account).await, (before.0 + 1000, before.1 + 1));
}

#[tokio::test]
async fn twenty_concurrent_deliveries_of_one_order_credit_it_once() {
    let c = customer(0).await;
    let account = c.funded.account.clone();
    let order = OrderSpec::new(&account, "pack_pro");
    let body = paid(&order);
    let signer = polar_signer();
    // Polar's retries of one delivery (same id) and re-sends (new ids), all at once.
    let same = signer.deliver(&body);
    let deliveries: Vec<Delivery> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                same.clone()
            } else {
                signer.deliver(&body)
            }
        })
        .collect();
    let replies = join_all(deliveries.iter().map(deliver)).await;
    for (status, reply) in &replies {
        assert_eq!(*status, 200, "{reply}");
    }
    let s = audited(&account).await;
    assert_eq!(s.balance.available, 1000, "credited exactly once");
    assert_eq!(of_kind(&s, "purchase"), 1);
}

#[tokio::test]
async fn events_and_orders_we_cannot_use_are_acknowledged_and_change_nothing() {
    let c = customer(7).await;
    let account = c.funded.account.clone();
    let before = state_of(&account).await;
    let signer = polar_signer();
    let order = OrderSpec::new(&account, "pack_pro");

    // A checkout update (Polar's real shape for the data).
    let (_, checkout) = checkout_response(&account, &c.email, "pack_pro", false);
    let mut unpaid = order_json(&order, 0);
    unpaid["status"] = json!("pending");
    unpaid["paid"] = json!(false);
    let mut stray = order_json(&OrderSpec::new(&account, "pack_pro"), 0);
    stray["product_id"] = json!(STRAY_PRODUCT);
    stray["product"]["id"] = json!(STRAY_PRODUCT);
    let ghost = OrderSpec::new("acct_that_does_not_exist", "pack_pro");
    let cases = [
        ("checkout.updated", event("checkout.updated", checkout)),
        // Created is not paid.
        ("order.created", event("order.created", unpaid.clone())),
        ("order.updated", event("order.updated", unpaid)),
        (
            "order.paid of an unmapped product",
            event("order.paid", stray),
        ),
        ("order.paid of an unknown account", paid(&ghost)),
    ];
    for (what, body) in cases {
        let (status, reply) = deliver(&signer.deliver(&body)).await;
        assert!((200..300).contains(&status), "{what}: {status} {reply}");
        assert_eq!(state_of(&account).await, before, "{what} changed nothing");
    }
}

#[tokio::test]
async fn a_refund_takes_back_the_packs_credits_never_below_zero() {
    let signer = polar_signer();

    // All the credits still there: the balance is back where it was before the purchase.
    let c = customer(7).await;
    let account = c.funded.account.clone();
    let order = OrderSpec::new(&account, "pack_pro");
    let (status, _) = deliver(&signer.deliver(&paid(&order))).await;
    assert_eq!(status, 200);
    assert_eq!(audited(&account).await.balance.available, 1007);
    let refund = signer.deliver(&refunded(&order));
    let (status, reply) = deliver(&refund).await;
    assert_eq!(status, 200, "{reply}");
    let s = audited(&account).await;
    assert_eq!(
        s.balance.available, 7,
        "back to the balance before the purchase"
    );
    let t = &s.transactions[0];
    assert_eq!((t.kind.as_str(), t.amount), ("refund", -1000));
    assert!(t.description.contains("Pro"), "{}", t.description);
    // Again (same delivery, and a re-send), and a late re-send of the paid event: no change.
    let (status, _) = deliver(&refund).await;
    assert_eq!(status, 200);
    let (status, _) = deliver(&signer.deliver(&refunded(&order))).await;
    assert_eq!(status, 200);
    let (status, _) = deliver(&signer.deliver(&paid(&order))).await;
    assert_eq!(status, 200);
    let s = audited(&account).await;
    assert_eq!(s.balance.available, 7);
    assert_eq!((of_kind(&s, "purchase"), of_kind(&s, "refund")), (1, 1));

    // Some credits spent: the refund takes what is left, and the balance stops at 0.
    let c = customer(0).await;
    let account = c.funded.account.clone();
    let order = OrderSpec::new(&account, "pack_starter");
    let (status, _) = deliver(&signer.deliver(&paid(&order))).await;
    assert_eq!(status, 200);
    let key = client_with_key(&c.funded.key);
    assert_eq!(credits_header(&capture(&key).await), Some(99));
    assert_eq!(credits_header(&capture(&key).await), Some(98));
    let (status, reply) = deliver(&signer.deliver(&refunded(&order))).await;
    assert_eq!(status, 200, "{reply}");
    let s = audited(&account).await;
    assert_eq!(s.balance.available, 0, "never below zero");
    assert_eq!(s.balance.spent, 2, "what was spent stays spent");
    let t = &s.transactions[0];
    assert_eq!((t.kind.as_str(), t.amount), ("refund", -98));
    let (status, _) = deliver(&signer.deliver(&refunded(&order))).await;
    assert_eq!(status, 200);
    let s = audited(&account).await;
    assert_eq!((s.balance.available, of_kind(&s, "refund")), (0, 1));
}

#[tokio::test]
async fn a_refund_before_its_payment_waits_and_partial_refunds_take_each_share_once() {
    let signer = polar_signer();
    let c = customer(5).await;
    let account = c.funded.account.clone();

    // The refund overtakes the payment: 409, nothing recorded, so Polar retries it.
    let order = OrderSpec::new(&account, "pack_pro");
    let early = signer.deliver(&refunded(&order));
    let (status, reply) = deliver(&early).await;
    assert_eq!(
        (status, code(&reply)),
        (409, Some("order_not_credited")),
        "{reply}"
    );
    let s = audited(&account).await;
    assert_eq!((s.balance.available, of_kind(&s, "refund")), (5, 0));
    // The payment lands, then Polar's retry of the same delivery applies the refund.
    let (status, _) = deliver(&signer.deliver(&paid(&order))).await;
    assert_eq!(status, 200);
    assert_eq!(audited(&account).await.balance.available, 1005);
    let (status, reply) = deliver(&early).await;
    assert_eq!(status, 200, "{reply}");
    let s = audited(&account).await;
    assert_eq!((s.balance.available, of_kind(&s, "refund")), (5, 1));

    // Two partial refunds of one Pro order ($35.00 = 1,000 credits): $10.50, then $28.00 in
    // all. Each takes its new share: 300, then 500; re-sends of either take nothing.
    let order = OrderSpec::new(&account, "pack_pro");
    let (status, _) = deliver(&signer.deliver(&paid(&order))).await;
    assert_eq!(status, 200);
    let first = signer.deliver(&partially_refunded(&order, 1050));
    let (status, _) = deliver(&first).await;
    assert_eq!(status, 200);
    assert_eq!(audited(&account).await.balance.available, 705);
    let (status, _) = deliver(&signer.deliver(&partially_refunded(&order, 2800))).await;
    assert_eq!(status, 200);
    for again in [first, signer.deliver(&partially_refunded(&order, 2800))] {
        let (status, _) = deliver(&again).await;
        assert_eq!(status, 200);
    }
    let s = audited(&account).await;
    assert_eq!(s.balance.available, 205);
    let refunds = amounts_of(&s, shotfarm::ledger::TxKind::Refund);
    assert_eq!(refunds, [-500, -300, -1000]);
    assert!(
        s.transactions[0]
            .description
            .contains("800 of 1000 credits refunded"),
        "{}",
        s.transactions[0].description
    );
}

#[tokio::test]
async fn purchase_checkout_then_paid_webhook_shows_in_balance_and_history() {
    let c = customer(5).await;
    let account = c.funded.account.clone();
    let (url, checkout) = checkout_response(&account, &c.email, "pack_pro", false);
    let guard = expect_checkout(
        &account,
        ResponseTemplate::new(201).set_body_json(checkout),
        "flow",
    )
    .await;
    let (status, answer) = purchase(&c.session, json!({"packId": "pack_pro"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["checkoutUrl"], url.as_str());
    let sent: Value =
        serde_json::from_slice(&guard.received_requests().await[0].body).expect("JSON body");
    drop(guard);

    // The customer pays; Polar's order carries the checkout's metadata.
    let metadata = &sent["metadata"];
    let order = OrderSpec {
        id: uuid::Uuid::new_v4().to_string(),
        account: metadata["account_id"].as_str().expect("account_id"),
        email: &c.email,
        pack_id: metadata["pack_id"].as_str().expect("pack_id"),
        auto_topup: metadata["auto_topup"].as_bool().expect("auto_topup"),
    };
    let (status, reply) = deliver(&polar_signer().deliver(&paid(&order))).await;
    assert_eq!(status, 200, "{reply}");

    let http = reqwest::Client::new();
    let cookie = format!("session={}", c.session);
    let (status, balance) = json_of(
        http.get(daemon().url("/api/v1/credits"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("balance"),
    )
    .await;
    assert_eq!(status, 200, "{balance}");
    assert_eq!(balance["balance"], 1005, "{balance}");
    let (status, history) = json_of(
        http.get(daemon().url("/api/v1/credits/transactions?limit=10&offset=0"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("transactions"),
    )
    .await;
    assert_eq!(status, 200, "{history}");
    let newest = &history["transactions"][0];
    assert_eq!(newest["type"], "purchase", "{history}");
    assert_eq!(newest["amount"], 1000, "{history}");
    assert_eq!(newest["balanceAfter"], 1005, "{history}");
    assert!(
        newest["description"]
            .as_str()
            .is_some_and(|d| d.contains("Pro")),
        "{history}"
    );
    audited(&account).await;
}

#[tokio::test]
async fn auto_topup_prompts_exactly_below_the_threshold() {
    let c = customer(4).await;
    let account = c.funded.account.clone();
    let http = reqwest::Client::new();
    let key = client_with_key(&c.funded.key);
    let cookie = format!("session={}", c.session);
    let settings_url = daemon().url("/api/v1/credits/auto-topup");
    let put = |body: Value| {
        let request = http
            .put(&settings_url)
            .header("cookie", &cookie)
            .json(&body);
        async move { json_of(request.send().await.expect("put auto-topup")).await }
    };
    let defaults = json!({"enabled": false, "threshold": 0, "packId": "",
                          "notificationUrl": null, "notificationSecret": null});
    let (status, got) = json_of(key.get(&settings_url).send().await.expect("get")).await;
    assert_eq!((status, &got), (200, &defaults));

    for (body, field) in [
        (json!({"threshold": 0}), "threshold"),
        (json!({"threshold": -5}), "threshold"),
        (json!({"packId": "pack_nope"}), "packId"),
        (json!({"enabled": true}), "threshold"),
        (json!({"enabled": true, "threshold": 3}), "packId"),
    ] {
        let (status, reply) = put(body.clone()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
    }
    let (status, _) = json_of(
        key.put(&settings_url)
            .json(&json!({"enabled": true, "threshold": 3, "packId": "pack_starter"}))
            .send()
            .await
            .expect("put with a key"),
    )
    .await;
    assert_eq!(status, 401, "changing settings needs a session");
    let (_, got) = json_of(key.get(&settings_url).send().await.expect("get")).await;
    assert_eq!(got, defaults, "refused updates stored nothing");

    let on = json!({"enabled": true, "threshold": 3, "packId": "pack_starter",
                    "notificationUrl": null, "notificationSecret": null});
    let (status, got) =
        put(json!({"enabled": true, "threshold": 3, "packId": "pack_starter"})).await;
    assert_eq!((status, &got), (200, &on));
    let (_, got) = json_of(key.get(&settings_url).send().await.expect("get")).await;
    assert_eq!(got, on);

    let balance = || async {
        json_of(
            key.get(daemon().url("/api/v1/credits"))
                .send()
                .await
                .expect("balance"),
        )
        .await
        .1
    };
    let low_headers = |r: &reqwest::Response| {
        (
            r.headers()
                .get("x-credits-low")
                .map(|v| v.to_str().expect("ascii").to_string()),
            r.headers()
                .get("x-credits-suggested-pack")
                .map(|v| v.to_str().expect("ascii").to_string()),
        )
    };
    let b = balance().await;
    assert_eq!(
        (&b["balance"], &b["lowBalance"]),
        (&json!(4), &json!(false)),
        "{b}"
    );
    assert!(b["suggestedPack"].is_null(), "{b}");

    // 4 → 3: not below 3.
    let r = capture(&key).await;
    assert_eq!(credits_header(&r), Some(3));
    assert_eq!(low_headers(&r), (None, None));
    let b = balance().await;
    assert_eq!(b["lowBalance"], false, "{b}");
    assert!(b["suggestedPack"].is_null(), "{b}");

    // 3 → 2 and 2 → 1: below it.
    for left in [2, 1] {
        let r = capture(&key).await;
        assert_eq!(credits_header(&r), Some(left));
        assert_eq!(
            low_headers(&r),
            (Some("true".to_string()), Some("pack_starter".to_string())),
            "balance {left}"
        );
        let b = balance().await;
        assert_eq!(b["lowBalance"], true, "{b}");
        assert_eq!(b["suggestedPack"]["id"], "pack_starter", "{b}");
        assert_eq!(b["suggestedPack"]["credits"], 100, "{b}");
    }

    // Disabled: the rest of the settings is kept, and the prompt stops.
    let (status, got) = put(json!({"enabled": false})).await;
    assert_eq!(
        (status, &got),
        (
            200,
            &json!({"enabled": false, "threshold": 3, "packId": "pack_starter",
                    "notificationUrl": null, "notificationSecret": null})
        )
    );
    let r = capture(&key).await;
    assert_eq!(credits_header(&r), Some(0));
    assert_eq!(low_headers(&r), (None, None));
    let b = balance().await;
    assert_eq!(b["lowBalance"], false, "{b}");
    assert!(b["suggestedPack"].is_null(), "{b}");
    let s = audited(&account).await;
    assert_eq!((s.balance.available, s.balance.spent), (0, 4));
}

#[tokio::test]
async fn a_private_daemon_standard_secret_unreachable_polar_and_redis_down() {
    // A Redis of its own, so stopping it disturbs no other test.
    let server = start_redis();
    let closed = free_port();
    let url = server.url.clone();
    let daemon = Daemon::start(move |c| {
        on_own_redis(c, &url);
        c.payments.polar_server = PolarServer::Sandbox;
        // Nothing listens there.
        c.payments.polar_api_url = format!("http://127.0.0.1:{closed}");
        c.payments.polar_access_token = TOKEN.to_string();
        c.payments.webhook_secret = STANDARD_SECRET.to_string();
        c.payments.webhook_secret_format = WebhookSecretFormat::Standard;
        c.payments.timeout_ms = POLAR_TIMEOUT_MS;
        c.payments.products = products();
    });
    let c = customer_on(&daemon, &server.url, 5).await;
    let account = c.funded.account.clone();
    let state = || async { audited_on(&server.url, &account).await };
    let before = state().await;

    // Polar unreachable.
    let (status, body) = purchase_on(&daemon, &c.session, json!({"packId": "pack_pro"})).await;
    assert_eq!(
        (status, code(&body)),
        (502, Some("payment_provider_error")),
        "{body}"
    );
    assert_eq!(state().await.balance, before.balance);

    // `standard`: the key is the base64-decoded secret; its text as the key is refused.
    let standard = Signer::standard(STANDARD_SECRET);
    let order = OrderSpec::new(&account, "pack_pro");
    let (status, reply) = post_webhook(
        &daemon,
        &Signer::polar(STANDARD_SECRET).deliver(&paid(&order)),
        None,
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    let (status, reply) = post_webhook(&daemon, &standard.deliver(&paid(&order)), None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(state().await.balance.available, 1005);

    // Redis down: the delivery fails with a 5xx, so Polar retries it.
    let second = OrderSpec::new(&account, "pack_starter");
    let delivery = standard.deliver(&paid(&second));
    server.kill();
    let (status, reply) = post_webhook(&daemon, &delivery, None).await;
    assert_eq!(
        (status, code(&reply)),
        (503, Some("ledger_unavailable")),
        "{reply}"
    );
    let server = server.restart().expect("restart redis-server");
    let mut last = 0;
    for _ in 0..50 {
        let (status, _) = post_webhook(&daemon, &delivery, None).await;
        last = status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last, 200, "the retried delivery lands once Redis is back");
    let (status, _) = post_webhook(&daemon, &delivery, None).await;
    assert_eq!(status, 200);
    let s = audited_on(&server.url, &account).await;
    assert_eq!(s.balance.available, 1105, "both orders credited once");
    assert_eq!(of_kind(&s, "purchase"), 2);
    daemon.stop();
    server.kill();
}

/// `GET /v1/orders/` as Polar answers it: one page of orders.
pub(crate) fn orders_page(items: Vec<Value>, max_page: u32) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "items": items,
        "pagination": {"total_count": 5, "max_page": max_page},
    }))
}

/// `shotfarm payments reconcile` (the real binary) against the stand-in and the test Redis.
fn reconcile(dir: &std::path::Path) -> String {
    reconcile_with(dir, &format!("url = \"{}\"", redis_url()), &polar().uri())
}

/// `shotfarm payments reconcile` (the real binary), with `redis` as its config's `[redis]`
/// section and the Polar API at `polar`; its report.
pub(crate) fn reconcile_with(dir: &std::path::Path, redis: &str, polar: &str) -> String {
    let config = dir.join("shotfarm.toml");
    let products: String = products()
        .iter()
        .map(|(pack, product)| format!("{pack} = \"{product}\"\n"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "[redis]\n{redis}\n[payments]\npolar_server = \"sandbox\"\npolar_api_url = \"{polar}\"\npolar_access_token = \"{TOKEN}\"\n[payments.products]\n{products}",
        ),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shotfarm"))
        .args(["payments", "reconcile", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .expect("shotfarm payments reconcile");
    assert!(
        out.status.success(),
        "reconcile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn reconciliation_applies_every_missing_grant_and_refund_exactly_once() {
    let c = customer(5).await;
    let account = c.funded.account.clone();
    // A: paid and delivered. B: paid, its webhook lost. C: paid, then $10.50 of $35 refunded,
    // neither webhook delivered. D: still pending. E: another organization product.
    let a = OrderSpec::new(&account, "pack_pro");
    let (status, _) = deliver(&polar_signer().deliver(&paid(&a))).await;
    assert_eq!(status, 200);
    let b = OrderSpec::new(&account, "pack_starter");
    let c_order = OrderSpec::new(&account, "pack_pro");
    let d = OrderSpec::new(&account, "pack_business");
    let mut pending = order_json(&d, 0);
    pending["status"] = json!("pending");
    pending["paid"] = json!(false);
    let mut stray = order_json(&OrderSpec::new(&account, "pack_pro"), 0);
    stray["product_id"] = json!(STRAY_PRODUCT);
    stray["product"]["id"] = json!(STRAY_PRODUCT);
    let first = vec![order_json(&a, 0), order_json(&b, 0)];
    let second = vec![order_json(&c_order, 1050), pending, stray];
    let mut guards = Vec::new();
    for (page, items) in [("1", first), ("2", second)] {
        guards.push(
            Mock::given(method("GET"))
                .and(path("/v1/orders/"))
                .and(wiremock::matchers::query_param("page", page))
                .and(wiremock::matchers::query_param("limit", "100"))
                .and(wiremock::matchers::header(
                    "authorization",
                    format!("Bearer {TOKEN}").as_str(),
                ))
                .respond_with(orders_page(items, 2))
                .named(format!("orders page {page}"))
                .mount_as_scoped(polar())
                .await,
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    let report = reconcile(dir.path());
    assert_eq!(
        report,
        "5 orders read: 2 credited now, 1 already credited, 1 refunds taken back now, 2 not ours to apply"
    );
    let s = audited(&account).await;
    // 5 + 1000 (A) + 100 (B) + 1000 (C) − 300 (C's refunded share).
    assert_eq!(s.balance.available, 1805);
    assert_eq!((of_kind(&s, "purchase"), of_kind(&s, "refund")), (3, 1));
    // Again: nothing left to apply.
    let report = reconcile(dir.path());
    assert_eq!(
        report,
        "5 orders read: 0 credited now, 3 already credited, 0 refunds taken back now, 2 not ours to apply"
    );
    assert_eq!(audited(&account).await.balance.available, 1805);
    drop(guards);
}
