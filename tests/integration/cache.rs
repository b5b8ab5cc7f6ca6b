//! The capture cache (`cache=true`): a repeat within its lifetime is a free hit with the same
//! bytes; anything that changes the image misses; an expired entry misses; a failed capture
//! fills nothing; the disk cache stays under its byte bound while filling past it and keeps its
//! entries across a restart. Every test audits the ledger.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    assert_refused_options, audited, client_with_key, credits_header, enc, metric_value, page,
    provision, ready_shared, Daemon,
};

/// A GET capture on `daemon`: status, `x-cache`, credits left, body.
async fn get(
    daemon: &Daemon,
    key: &reqwest::Client,
    query: &str,
) -> (u16, Option<String>, Option<i64>, Vec<u8>) {
    get_at(&daemon.url(""), key, query).await
}

fn plain() -> String {
    format!("url={}", enc(&page("/plain")))
}

#[tokio::test]
async fn a_repeat_is_a_free_hit_with_the_same_bytes_and_other_options_miss() {
    let daemon = ready_shared().await;
    let funded = provision(10);
    let key = client_with_key(&funded.key);

    let first = get(daemon, &key, &format!("{}&cache=true&width=900", plain())).await;
    assert_eq!(
        (first.0, first.1.as_deref(), first.2),
        (200, Some("miss"), Some(9))
    );

    // The same capture spelled otherwise (POST, JSON values, another order): a hit, free.
    let r = key
        .post(daemon.url("/api/v1/screenshot"))
        .json(&json!({"width": 900, "cache": "1", "url": page("/plain")}))
        .send()
        .await
        .expect("capture");
    assert_eq!(r.status(), 200);
    let h = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(h("x-cache").as_deref(), Some("hit"));
    assert!(
        h("age").is_some_and(|a| a.parse::<u64>().is_ok()),
        "age header"
    );
    assert!(
        h("cache-control").is_some_and(|c| c.starts_with("private, max-age=")),
        "{:?}",
        h("cache-control")
    );
    assert_eq!(credits_header(&r), Some(9), "a hit costs nothing");
    assert_eq!(
        r.bytes().await.expect("body").to_vec(),
        first.3,
        "the same bytes"
    );

    // Anything that changes the image is another entry: charged again.
    let other = get(daemon, &key, &format!("{}&cache=true&width=901", plain())).await;
    assert_eq!((other.1.as_deref(), other.2), (Some("miss"), Some(8)));
    let tagged = get(
        daemon,
        &key,
        &format!("{}&cache=true&width=900&cache_key=v2", plain()),
    )
    .await;
    assert_eq!((tagged.1.as_deref(), tagged.2), (Some("miss"), Some(7)));
    // Without cache=true nothing is looked up (and the response says nothing of a cache).
    let uncached = get(daemon, &key, &format!("{}&width=900", plain())).await;
    assert_eq!((uncached.0, uncached.1, uncached.2), (200, None, Some(6)));
    // Another account never sees this one's entries.
    let stranger = provision(1);
    let theirs = get(
        daemon,
        &client_with_key(&stranger.key),
        &format!("{}&cache=true&width=900", plain()),
    )
    .await;
    assert_eq!((theirs.1.as_deref(), theirs.2), (Some("miss"), Some(0)));
    // Even with no credit left, a hit is served.
    let again = get(
        daemon,
        &client_with_key(&stranger.key),
        &format!("{}&cache=true&width=900", plain()),
    )
    .await;
    assert_eq!(
        (again.0, again.1.as_deref(), again.2),
        (200, Some("hit"), Some(0))
    );

    // The usage history explains every image: 4 charged, 1 from the cache.
    let usage: Value = key
        .get(daemon.url("/api/v1/credits/usage?days=1"))
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (usage["total"].as_i64(), usage["totalCacheHits"].as_i64()),
        (Some(4), Some(1)),
        "{usage}"
    );
    assert_eq!(usage["days"][0]["cacheHits"], 1, "{usage}");
    audited(&funded.account).await;
    audited(&stranger.account).await;
}

#[tokio::test]
async fn a_burst_of_one_capture_is_captured_and_charged_once() {
    let daemon = ready_shared().await;
    let funded = provision(10);
    let key = client_with_key(&funded.key);
    // A page that answers after 600 ms: the burst arrives while the first capture runs.
    let q = format!("url={}&cache=true", enc(&page("/slow/600")));
    let burst: Vec<_> = (0..6).map(|_| get(daemon, &key, &q)).collect();
    let answers = futures::future::join_all(burst).await;
    let mut misses = 0;
    for (status, cache, _, body) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(body, &answers[0].3, "every answer is the one image");
        misses += usize::from(cache.as_deref() == Some("miss"));
    }
    assert_eq!(misses, 1, "one capture, five served from it");
    assert_eq!(
        audited(&funded.account).await.balance.spent,
        1,
        "charged once"
    );
}

#[tokio::test]
async fn an_expired_entry_misses_and_a_failed_capture_fills_nothing() {
    let daemon = ready_shared().await;
    let funded = provision(10);
    let key = client_with_key(&funded.key);
    let q = format!("{}&cache=true&cache_ttl=1&width=777", plain());
    assert_eq!(get(daemon, &key, &q).await.2, Some(9));
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let late = get(daemon, &key, &q).await;
    assert_eq!(
        (late.0, late.1.as_deref(), late.2),
        (200, Some("miss"), Some(8))
    );

    // A page that fails (HTTP 500) is free, and leaves no entry to be served.
    let failing = format!("url={}&cache=true", enc(&page("/status/500")));
    for _ in 0..2 {
        let (status, cache, left, _) = get(daemon, &key, &failing).await;
        assert_ne!(status, 200);
        assert_eq!((cache, left), (None, Some(8)), "free, and never a hit");
    }
    audited(&funded.account).await;
}

#[tokio::test]
async fn cache_options_are_checked() {
    assert_refused_options(&[
        ("&cache=true&cache_ttl=0".to_string(), "cache_ttl"),
        // Above this server's cache.max_ttl_secs (30 days by default).
        ("&cache=true&cache_ttl=2592001".to_string(), "cache_ttl"),
        ("&cache=true&cache_key=a/b".to_string(), "cache_key"),
        (
            format!("&cache=true&cache_key={}", "k".repeat(65)),
            "cache_key",
        ),
        ("&cache=false&cache_ttl=60".to_string(), "cache_ttl"),
        ("&cache=maybe".to_string(), "cache"),
    ])
    .await;
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn the_disk_cache_stays_under_its_bound_and_survives_a_restart() {
    const BOUND: u64 = 65_536;
    let dir = tempfile::tempdir().expect("cache dir");
    let start = |dir: &Path| {
        let dir = dir.to_path_buf();
        Daemon::start(move |c| {
            c.farm.browsers = 1;
            c.cache.dir = dir;
            c.cache.max_bytes = BOUND;
            c.cache.max_entry_bytes = BOUND;
        })
    };
    let daemon = start(dir.path());
    daemon.wait_ready(1).await;
    let funded = provision(100);
    let key = client_with_key(&funded.key);
    // Entries of some kilobytes each: enough of them overflow the bound.
    let q = |n: usize| format!("url={}&cache=true&cache_key=k{n}", enc(&page("/tall/1200")));
    let first = get(&daemon, &key, &q(0)).await;
    assert_eq!(first.0, 200);
    let size = first.3.len() as u64;
    assert!(
        size * 3 < BOUND,
        "entries of {size} bytes: too large for this test"
    );
    let fill = (BOUND / size) as usize + 3;
    for n in 1..fill {
        let (status, cache, _, _) = get(&daemon, &key, &q(n)).await;
        assert_eq!((status, cache.as_deref()), (200, Some("miss")), "entry {n}");
        let used = dir_bytes(dir.path());
        assert!(
            used <= BOUND,
            "after entry {n}: {used} bytes on disk > {BOUND}"
        );
    }
    let text = daemon.metrics_text().await;
    assert!(
        metric_value(&text, "shotfarm_cache_evictions_total") >= 3.0,
        "{text}"
    );
    assert!(metric_value(&text, "shotfarm_cache_bytes") <= BOUND as f64);
    // The newest entry is served; the oldest was evicted.
    let newest = get(&daemon, &key, &q(fill - 1)).await;
    assert_eq!(newest.1.as_deref(), Some("hit"));
    daemon.stop();

    // Another daemon on the same directory serves what was kept, free.
    let daemon = start(dir.path());
    daemon.wait_ready(1).await;
    let before = get(&daemon, &key, &q(fill - 1)).await;
    assert_eq!((before.0, before.1.as_deref()), (200, Some("hit")));
    assert_eq!(before.3, newest.3, "the same bytes after the restart");
    let oldest = get(&daemon, &key, &q(0)).await;
    assert_eq!(
        oldest.1.as_deref(),
        Some("miss"),
        "evicted before the restart"
    );
    assert!(dir_bytes(dir.path()) <= BOUND);
    let snapshot = audited(&funded.account).await;
    // One charge per miss: `fill` captures before the restart, one after.
    assert_eq!(snapshot.balance.spent, fill as i64 + 1);
    daemon.stop();
}

/// A GET capture on a spawned daemon at `base`: status, `x-cache`, credits left, body.
async fn get_at(
    base: &str,
    key: &reqwest::Client,
    query: &str,
) -> (u16, Option<String>, Option<i64>, Vec<u8>) {
    let r = key
        .get(format!("{base}/api/v1/screenshot?{query}"))
        .send()
        .await
        .expect("capture");
    let cache = r
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, left) = (r.status().as_u16(), credits_header(&r));
    (status, cache, left, r.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_one_cache_through_the_bucket() {
    use testkit::moto::{MotoServer, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
    let moto = MotoServer::start().expect("moto_server");
    moto.create_bucket("shotfarm-cache").expect("the bucket");
    let env = [
        ("SHOTFARM_STORAGE__BUCKET", "shotfarm-cache"),
        ("SHOTFARM_STORAGE__ENDPOINT", moto.endpoint.as_str()),
        ("SHOTFARM_STORAGE__PATH_STYLE", "true"),
        ("SHOTFARM_CACHE__BACKEND", "bucket"),
        ("SHOTFARM_FARM__BROWSERS", "1"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
    ];
    let (pa, pb) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (_a, a) = crate::support::spawn_binary(pa.path(), &env);
    let (_b, b) = crate::support::spawn_binary(pb.path(), &env);
    crate::support::wait_ready_at(&a, 1).await;
    crate::support::wait_ready_at(&b, 1).await;
    let funded = provision(10);
    let key = client_with_key(&funded.key);

    let q = format!("{}&cache=true&width=640", plain());
    let first = get_at(&a, &key, &q).await;
    assert_eq!(
        (first.0, first.1.as_deref(), first.2),
        (200, Some("miss"), Some(9))
    );
    let other_host = get_at(&b, &key, &q).await;
    assert_eq!(
        (other_host.0, other_host.1.as_deref(), other_host.2),
        (200, Some("hit"), Some(9)),
        "the other host serves the entry, free"
    );
    assert_eq!(other_host.3, first.3, "the same bytes");

    // A burst of one missing capture on both hosts at once: captured and charged once.
    let slow = format!("url={}&cache=true", enc(&page("/slow/800")));
    let burst: Vec<_> = (0..6)
        .map(|i| {
            let (base, key, slow) = (if i % 2 == 0 { &a } else { &b }, &key, &slow);
            async move { get_at(base, key, slow).await }
        })
        .collect();
    let answers = futures::future::join_all(burst).await;
    let misses = answers
        .iter()
        .filter(|(status, cache, _, body)| {
            assert_eq!(*status, 200);
            assert_eq!(body, &answers[0].3, "every answer is the one image");
            cache.as_deref() == Some("miss")
        })
        .count();
    assert_eq!(misses, 1, "one capture across both hosts");
    assert_eq!(audited(&funded.account).await.balance.spent, 2);
}
