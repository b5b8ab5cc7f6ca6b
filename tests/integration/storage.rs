//! `store=true` against a real S3-compatible server: moto in server mode (PyPI, pinned, from
//! `scripts/install-deps.sh --test`; `testkit::moto`) on a loopback port, and the daemon binary
//! with `[storage]` pointed at it and made-up credentials in its environment (the only place it
//! reads them from). A stored capture's URL returns the very bytes a plain capture of the page
//! returns, and costs one credit; an upload that fails (moto stopped) is 502 `storage_failed`
//! and free; the ledger is audited after.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use shotfarm::config::StorageConfig;
use shotfarm::storage::{Credentials, Storage, StorageError};
use testkit::moto::{MotoServer, ACCESS_KEY_ID, SECRET_ACCESS_KEY};

use crate::support::{
    audited, client_with_key, credits_header, enc, page, provision, ready_shared,
    spawn_binary_with, wait_ready_at,
};

const BUCKET: &str = "shotfarm-test";

/// `[storage]` as the daemon gets it, for a moto at `endpoint`.
fn storage_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SHOTFARM_STORAGE__BUCKET", BUCKET.to_string()),
        ("SHOTFARM_STORAGE__ENDPOINT", endpoint.to_string()),
        ("SHOTFARM_STORAGE__PATH_STYLE", "true".to_string()),
        ("SHOTFARM_STORAGE__TIMEOUT_MS", "3000".to_string()),
        ("SHOTFARM_FARM__BROWSERS", "1".to_string()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
    ]
}

/// The test's own handle on the same bucket, through the daemon's storage module.
fn storage_at(endpoint: &str, timeout_ms: u64) -> Storage {
    let config = StorageConfig {
        bucket: BUCKET.into(),
        endpoint: endpoint.into(),
        path_style: true,
        timeout_ms,
        ..StorageConfig::default()
    };
    let credentials = Credentials {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: SECRET_ACCESS_KEY.into(),
        session_token: None,
    };
    Storage::with_credentials(&config, credentials).expect("a storage client")
}

async fn get_json(r: reqwest::Response) -> (u16, Option<i64>, Value) {
    let (status, credits) = (r.status().as_u16(), credits_header(&r));
    let body = r.json().await.expect("a JSON body");
    (status, credits, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_captures_are_the_plain_bytes_charged_once_and_a_failed_upload_is_free() {
    let moto = MotoServer::start().expect("moto_server");
    moto.create_bucket(BUCKET).expect("the bucket");
    let profiles = tempfile::tempdir().expect("profile dir");
    let env = storage_env(&moto.endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_daemon, base) = spawn_binary_with(
        profiles.path(),
        &crate::support::redis_url(),
        &env,
        None,
        &[],
    );
    wait_ready_at(&base, 1).await;
    let funded = provision(10);
    let key = client_with_key(&funded.key);
    let capture = |query: String| {
        let key = key.clone();
        let url = format!(
            "{base}/api/v1/screenshot?url={}{query}",
            enc(&page("/plain"))
        );
        async move { key.get(url).send().await.expect("capture") }
    };

    // A plain capture of the page: the bytes to compare with.
    let plain = capture(String::new()).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(credits_header(&plain), Some(9));
    let plain = plain.bytes().await.expect("image");

    // Stored: JSON saying where, one credit, and the URL serves the same bytes.
    let stored = capture("&store=true".into()).await;
    let request_id = stored
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("x-request-id");
    let (status, credits, body) = get_json(stored).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(credits, Some(8), "one credit for the stored capture");
    let object_key = body["key"].as_str().expect("key").to_string();
    let prefix = format!("captures/{}/", funded.account);
    assert!(
        object_key.starts_with(&prefix) && object_key.ends_with(".png"),
        "{object_key}"
    );
    assert_eq!(body["format"], "png");
    assert_eq!(body["bytes"], plain.len());
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(1280), Some(800))
    );
    assert!(
        body["expiresAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    let url = body["url"].as_str().expect("url");
    assert!(url.starts_with(&moto.endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "a presigned URL: {url}");
    assert!(!url.contains(SECRET_ACCESS_KEY), "{url}");
    let fetched = reqwest::get(url).await.expect("GET the stored capture");
    assert_eq!(fetched.status(), 200);
    assert_eq!(
        fetched
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    let fetched = fetched.bytes().await.expect("stored bytes");
    assert_eq!(
        fetched, plain,
        "the stored object is the image a plain capture of the same page returns"
    );

    // The object as the storage module reads it: its type and user metadata; then deleted.
    let storage = storage_at(&moto.endpoint, 3_000);
    let (bytes, info) = storage
        .get(&object_key)
        .await
        .expect("get")
        .expect("the object exists");
    assert_eq!(bytes, plain);
    assert_eq!(info.content_type.as_deref(), Some("image/png"));
    assert_eq!(info.size, plain.len() as u64);
    let meta = |name: &str| {
        info.metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(meta("request-id"), Some(request_id));
    assert_eq!(meta("account"), Some(funded.account.clone()));
    assert_eq!(meta("width").as_deref(), Some("1280"));
    storage.delete(&object_key).await.expect("delete");
    assert!(storage.get(&object_key).await.expect("get").is_none());
    storage
        .delete(&object_key)
        .await
        .expect("deleting twice is fine");

    // A name of the caller's own, inside the account's folder.
    let (status, credits, body) =
        get_json(capture("&store=true&store_path=reports%2F2026%2Fhome.png".into()).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(credits, Some(7));
    assert_eq!(body["key"], format!("{prefix}reports/2026/home.png"));
    let again = reqwest::get(body["url"].as_str().expect("url"))
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(again, plain);

    // A bad name is refused before anything is held.
    for bad in [
        "..%2Fother.png",
        "%2Fabs.png",
        "a%2F%2Fb.png",
        "a%2F..%2F..%2Fb",
    ] {
        let (status, credits, body) =
            get_json(capture(format!("&store=true&store_path={bad}")).await).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "store_path", "{bad}: {body}");
        assert_eq!(credits, Some(7), "{bad}: nothing held or charged");
    }

    // The bucket goes away: the capture is made, the upload fails, nothing is charged.
    moto.kill();
    let started = Instant::now();
    let (status, credits, body) = get_json(capture("&store=true".into()).await).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "storage_failed", "{body}");
    assert!(body["request_id"].as_str().is_some(), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nothing was charged"), "{message}");
    for secret in [ACCESS_KEY_ID, SECRET_ACCESS_KEY, "127.0.0.1"] {
        assert!(!message.contains(secret), "{message}");
    }
    assert_eq!(credits, Some(7), "a failed upload is free");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let snapshot = audited(&funded.account).await;
    assert_eq!(snapshot.balance.available, 7);
    assert_eq!(
        snapshot.balance.spent, 3,
        "the plain capture and the two stored ones"
    );
    assert!(snapshot.holds.is_empty(), "every hold settled");
}

/// A server without `[storage]` refuses `store=true` naming it, before holding anything.
#[tokio::test]
async fn store_without_storage_configured_is_a_free_400_naming_store() {
    let daemon = ready_shared().await;
    let funded = provision(1);
    let key = client_with_key(&funded.key);
    for (query, field) in [
        ("&store=true", "store"),
        ("&store=true&store_path=a.png", "store"),
        ("&store_path=a.png", "store_path"),
        ("&store=true&store_path=..%2Fa.png", "store_path"),
    ] {
        let r = key
            .get(daemon.url(&format!(
                "/api/v1/screenshot?url={}{query}",
                enc(&page("/plain"))
            )))
            .send()
            .await
            .expect("capture");
        let (status, credits, body) = get_json(r).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
        assert_eq!(credits, Some(1), "{query}: nothing held or charged");
    }
    let snapshot = audited(&funded.account).await;
    assert_eq!(snapshot.balance.spent, 0);
}

/// A bucket that takes connections and never answers: every call of the storage module ends
/// at its timeout, as an error that names no credential.
#[tokio::test]
async fn a_stalled_bucket_ends_each_call_at_its_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    // Accepts and holds every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let storage = storage_at(&endpoint, 400);
    let started = Instant::now();
    let put = storage
        .put("a/b.png", Bytes::from_static(b"png"), "image/png", &[])
        .await;
    assert_eq!(put, Err(StorageError::Timeout(Duration::from_millis(400))));
    let get = storage.get("a/b.png").await;
    assert!(matches!(get, Err(StorageError::Timeout(_))), "{get:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let text = format!("{put:?} {get:?}");
    assert!(
        !text.contains(SECRET_ACCESS_KEY) && !text.contains(ACCESS_KEY_ID),
        "{text}"
    );
}
