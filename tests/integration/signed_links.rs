//! Signed image links (README, "Signed links"): links made exactly as the README's Node, Python
//! and shell snippets make them capture and are charged to the key's account; tampered,
//! stripped, expired, foreign, rotated-away and revoked links are refused with 403 at no charge
//! (balance unchanged, the ledger audited after each); signing secrets are made, listed and
//! revoked with the session only.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{audited, client_with_key, enc, page, provision_as, ready_shared, redis_url};

const README: &str = include_str!("../../README.md");
const MARKER: &str = "<!-- signed-links-test:";
/// What the README's snippets name, replaced by the test daemon and its fixture page.
const README_BASE: &str = "https://shots.example.com";
const README_PAGE: &str = "https://example.com/";

/// An account with an API key, logged in.
struct Customer {
    account: String,
    key: String,
    key_id: String,
    session: String,
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

async fn customer(credits: i64) -> Customer {
    let daemon = ready_shared().await;
    let email = format!("l{}@test.example", uuid::Uuid::new_v4().simple());
    let funded = provision_as(&redis_url(), &email, credits);
    let login = http()
        .post(daemon.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let session = login.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("session="))
        .expect("session=…")
        .to_string();
    let mut c = Customer {
        account: funded.account,
        key: funded.key,
        key_id: String::new(),
        session,
    };
    let keys = c.keys().await;
    c.key_id = keys[0]["id"].as_str().expect("key id").to_string();
    c
}

impl Customer {
    fn with_session(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        builder.header("cookie", format!("session={}", self.session))
    }

    async fn keys(&self) -> Vec<Value> {
        let r = self
            .with_session(http().get(ready_shared().await.url("/api/v1/keys")))
            .send()
            .await
            .expect("keys");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("json");
        body["keys"].as_array().expect("keys").clone()
    }

    fn secret_url(&self, key_id: &str) -> String {
        format!("/api/v1/keys/{key_id}/signing-secret")
    }

    /// A new signing secret for `key_id` (made or rotated) with the session.
    async fn rotate(&self, key_id: &str) -> String {
        let r = self
            .with_session(http().post(ready_shared().await.url(&self.secret_url(key_id))))
            .send()
            .await
            .expect("rotate");
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["keyId"], key_id);
        let secret = body["signingSecret"].as_str().expect("secret").to_string();
        assert!(secret.starts_with("lsk_") && secret.len() > 40, "{secret}");
        secret
    }

    async fn balance(&self) -> i64 {
        let s = audited(&self.account).await;
        assert!(s.holds.is_empty(), "no hold left open: {:?}", s.holds);
        s.balance.available
    }
}

/// The lower-case hex HMAC-SHA256 of `text` keyed by `secret`, as the README says.
fn hmac_hex(secret: &str, text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A capture query of the fixture page, small.
fn options() -> String {
    format!("url={}&width=200&height=150", enc(&page("/plain")))
}

/// `query` + `key_id` and `expires`, signed with `secret`: the path and query of a link.
fn signed(query: &str, key_id: &str, expires: u64, secret: &str) -> String {
    let part = format!("{query}&key_id={key_id}&expires={expires}");
    format!(
        "/api/v1/screenshot?{part}&signature={}",
        hmac_hex(secret, &part)
    )
}

/// GETs a link with no credentials: status, content type, body, and whether the response
/// carried a balance header.
async fn open(path_and_query: &str) -> (u16, String, Vec<u8>, bool) {
    let url = if path_and_query.starts_with("http") {
        path_and_query.to_string()
    } else {
        ready_shared().await.url(path_and_query)
    };
    let r = http().get(url).send().await.expect("link");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let balance_shown = r.headers().contains_key("x-credits-remaining");
    (
        status,
        content_type,
        r.bytes().await.expect("body").to_vec(),
        balance_shown,
    )
}

/// Asserts that the link is refused with 403 `code`, in the API's error body, at no charge.
async fn refused(c: &Customer, what: &str, path_and_query: &str, code: &str) {
    let before = c.balance().await;
    let (status, _, body, _) = open(path_and_query).await;
    let body: Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(status, 403, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert!(body["request_id"].is_string(), "{what}: {body}");
    assert_eq!(c.balance().await, before, "{what} cost nothing");
}

/// The README's link-making snippets: (interpreter, code), in order.
fn readme_snippets() -> Vec<(String, String)> {
    let lines: Vec<&str> = README.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix(MARKER) else {
            continue;
        };
        let program = rest.trim_end_matches("-->").trim().to_string();
        let fence = lines.get(i + 1).expect("a block after the marker");
        assert!(fence.starts_with("```"), "README.md:{}: no block", i + 2);
        let end = (i + 2..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .expect("a closed block");
        found.push((program, lines[i + 2..end].join("\n")));
    }
    found
}

#[tokio::test]
async fn links_made_as_the_readme_shows_capture_and_charge_one_credit_each() {
    let daemon = ready_shared().await;
    let c = customer(10).await;
    let secret = c.rotate(&c.key_id).await;
    let snippets = readme_snippets();
    let programs: Vec<&str> = snippets.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        programs,
        ["node", "python3", "bash"],
        "the README's snippets"
    );
    let base = format!("http://{}", daemon.bound.api);
    let mut balance = c.balance().await;
    for (program, code) in &snippets {
        assert!(
            code.contains(README_BASE)
                && (code.contains(README_PAGE) || code.contains(&enc(README_PAGE))),
            "{program}: the snippet names {README_BASE} and {README_PAGE}"
        );
        let code = code
            .replace(README_BASE, &base)
            .replace(README_PAGE, &page("/plain"))
            .replace(&enc(README_PAGE), &enc(&page("/plain")));
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("snippet");
        std::fs::write(&file, &code).expect("write the snippet");
        let out = Command::new(program)
            .arg(&file)
            .env("KEY_ID", &c.key_id)
            .env("SIGNING_SECRET", &secret)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} (scripts/install-deps.sh --test installs it): {e}")
            });
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success(),
            "{program}: {}\n{code}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with(&base), "{program} printed {stdout:?}");
        assert!(
            !stdout.contains(&secret),
            "{program}: no secret in the link"
        );
        let (status, content_type, body, balance_shown) = open(&stdout).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "image/png"),
            "{program}: {stdout}: {}",
            String::from_utf8_lossy(&body)
        );
        let image = crate::support::decode(&body);
        assert_eq!(
            image.dimensions(),
            (1200, 630),
            "{program}: the options signed"
        );
        assert!(
            !balance_shown,
            "{program}: a link's response shows no balance"
        );
        balance -= 1;
        assert_eq!(c.balance().await, balance, "{program}: one credit charged");
        // The same link again is another capture, charged again; changed, it is refused.
        let tampered = stdout.replace("width=1200", "width=1201");
        assert_ne!(tampered, stdout);
        refused(&c, program, &tampered, "invalid_signature").await;
    }
    let snapshot = audited(&c.account).await;
    assert_eq!(
        crate::support::amounts_of(&snapshot, shotfarm::ledger::TxKind::Usage),
        [-1, -1, -1]
    );
}

#[tokio::test]
async fn tampered_stripped_expired_foreign_rotated_and_revoked_links_are_refused_free() {
    let c = customer(5).await;
    let other = customer(5).await;
    let secret = c.rotate(&c.key_id).await;
    let other_secret = other.rotate(&other.key_id).await;
    let later = now() + 600;
    let good = signed(&options(), &c.key_id, later, &secret);
    let part = format!("{}&key_id={}&expires={later}", options(), c.key_id);
    let signature = hmac_hex(&secret, &part);

    // A changed option, a parameter added or taken away.
    refused(
        &c,
        "changed option",
        &good.replace("width=200", "width=201"),
        "invalid_signature",
    )
    .await;
    refused(
        &c,
        "added option",
        &format!(
            "/api/v1/screenshot?{}&full_page=true&key_id={}&expires={later}&signature={signature}",
            options(),
            c.key_id
        ),
        "invalid_signature",
    )
    .await;
    refused(
        &c,
        "a later expiry",
        &good.replace(
            &format!("expires={later}"),
            &format!("expires={}", later + 1),
        ),
        "invalid_signature",
    )
    .await;
    // Wrong key ids: another account's (which has a secret of its own), an unknown one; and
    // our key id signed with the other account's secret.
    refused(
        &c,
        "another account's key id",
        &good.replace(&c.key_id, &other.key_id),
        "invalid_signature",
    )
    .await;
    refused(
        &c,
        "an unknown key id",
        &signed(
            &options(),
            "key_00000000000000000000000000000000",
            later,
            &secret,
        ),
        "invalid_signature",
    )
    .await;
    refused(
        &c,
        "our key id, the other's secret",
        &signed(&options(), &c.key_id, later, &other_secret),
        "invalid_signature",
    )
    .await;
    // Expired, well signed.
    refused(
        &c,
        "expired",
        &signed(&options(), &c.key_id, now() - 1, &secret),
        "signature_expired",
    )
    .await;
    // Stripped: key and time without a signature (never an anonymous capture).
    refused(
        &c,
        "stripped signature",
        &format!("/api/v1/screenshot?{part}"),
        "invalid_signature",
    )
    .await;
    refused(
        &c,
        "signature not last",
        &format!("{good}&delay=0"),
        "invalid_signature",
    )
    .await;
    refused(
        &c,
        "upper-case hex",
        &good.replace(&signature, &signature.to_uppercase()),
        "invalid_signature",
    )
    .await;
    refused(
        &c,
        "short hex",
        &good.replace(&signature, &signature[..40]),
        "invalid_signature",
    )
    .await;
    // A signed link with a key header is ambiguous: 400, nothing charged.
    let before = c.balance().await;
    let r = client_with_key(&c.key)
        .get(ready_shared().await.url(&good))
        .send()
        .await
        .expect("ambiguous");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "ambiguous_credentials", "{body}");
    assert_eq!(c.balance().await, before);
    // No other account was charged either.
    assert_eq!(other.balance().await, 5);

    // The good link captures, for one credit.
    let (status, _, body, _) = open(&good).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(c.balance().await, 4);

    // Rotated: the old secret's links stop working, the new one's work.
    let rotated = c.rotate(&c.key_id).await;
    assert_ne!(rotated, secret);
    refused(&c, "rotated-away secret", &good, "invalid_signature").await;
    let fresh = signed(&options(), &c.key_id, later, &rotated);
    assert_eq!(open(&fresh).await.0, 200);
    assert_eq!(c.balance().await, 3);

    // Revoked secret: no link works; the key itself still does.
    let r = c
        .with_session(http().delete(ready_shared().await.url(&c.secret_url(&c.key_id))))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 204);
    refused(&c, "revoked secret", &fresh, "invalid_signature").await;
    let r = client_with_key(&c.key)
        .get(ready_shared().await.url("/api/v1/me"))
        .send()
        .await
        .expect("me");
    assert_eq!(r.status(), 200, "revoking the secret leaves the key");

    // Revoked API key: its secret dies with it.
    let last = c.rotate(&c.key_id).await;
    let link = signed(&options(), &c.key_id, later, &last);
    let r = c
        .with_session(
            http().delete(
                ready_shared()
                    .await
                    .url(&format!("/api/v1/keys/{}", c.key_id)),
            ),
        )
        .send()
        .await
        .expect("revoke key");
    assert_eq!(r.status(), 204);
    refused(&c, "revoked API key", &link, "invalid_signature").await;

    let snapshot = audited(&c.account).await;
    assert_eq!(
        crate::support::amounts_of(&snapshot, shotfarm::ledger::TxKind::Usage),
        [-1, -1],
        "exactly the two images delivered were charged"
    );
}

#[tokio::test]
async fn signing_secrets_are_made_listed_and_revoked_with_the_session_only() {
    let daemon = ready_shared().await;
    let c = customer(1).await;
    let other = customer(1).await;
    let url = daemon.url(&c.secret_url(&c.key_id));

    // An API key, even the key's own, cannot make or revoke a secret.
    for request in [
        client_with_key(&c.key).post(&url),
        client_with_key(&c.key).delete(&url),
    ] {
        let r = request.send().await.expect("with a key");
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    let keys = c.keys().await;
    assert_eq!(keys[0]["signingSecretCreatedAt"], Value::Null);

    // Made with the session: shown once, listed by its time only.
    let r = c
        .with_session(http().post(&url))
        .send()
        .await
        .expect("make");
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.expect("json");
    let secret = made["signingSecret"].as_str().expect("secret").to_string();
    let r = c
        .with_session(http().get(daemon.url("/api/v1/keys")))
        .send()
        .await
        .expect("keys");
    let listing = r.text().await.expect("text");
    assert!(
        !listing.contains(&secret),
        "the listing never shows the secret"
    );
    let keys: Value = serde_json::from_str(&listing).expect("json");
    assert_eq!(keys["keys"][0]["signingSecretCreatedAt"], made["createdAt"]);

    // Someone else's key, or none at all: 404, nothing changed.
    for key_id in [other.key_id.as_str(), "key_nope"] {
        for request in [
            c.with_session(http().post(daemon.url(&c.secret_url(key_id)))),
            c.with_session(http().delete(daemon.url(&c.secret_url(key_id)))),
        ] {
            let r = request.send().await.expect("foreign key");
            assert_eq!(r.status(), 404, "{key_id}");
        }
    }
    assert_eq!(other.keys().await[0]["signingSecretCreatedAt"], Value::Null);

    // Revoked (twice: the second is a no-op).
    for _ in 0..2 {
        let r = c
            .with_session(http().delete(&url))
            .send()
            .await
            .expect("revoke");
        assert_eq!(r.status(), 204);
    }
    assert_eq!(c.keys().await[0]["signingSecretCreatedAt"], Value::Null);
    // A link signed with it is refused.
    refused(
        &c,
        "revoked",
        &signed(&options(), &c.key_id, now() + 60, &secret),
        "invalid_signature",
    )
    .await;
}
