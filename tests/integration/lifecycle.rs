//! The farm under stress: a full queue, killed browsers, and shutdown leaving no Chromium behind.

use std::time::Duration;

use crate::support::{
    audited, browser_pids, client, client_with_key, credits_header, enc, eventually, get,
    metric_value, page, processes_under, provision, spawn_binary, wait_ready_at, Daemon,
};
use serde_json::Value;
use shotfarm::farm::proc_tree::group_alive;

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.farm.tabs_per_browser = 1;
        c.farm.queue_capacity = 1;
    });
    daemon.wait_ready(1).await;
    let hang = daemon.url(&format!(
        "/api/v1/screenshot?url={}&timeout=4000",
        enc(&page("/hang"))
    ));
    // One capture occupies the only tab, one waits in the queue.
    let client = client();
    let running = tokio::spawn(client.get(&hang).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = tokio::spawn(client.get(&hang).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = client.get(&hang).send().await.expect("third request");
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "queue_full");
    for task in [running, queued] {
        let response = task.await.expect("join").expect("response");
        assert_eq!(response.status(), 504, "the hanging captures time out");
    }
    daemon.stop();
}

#[tokio::test]
async fn killing_chromium_mid_load_restarts_it_and_the_job_is_retried() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.farm.tabs_per_browser = 1;
    });
    daemon.wait_ready(1).await;
    let pids = browser_pids(&daemon.profile_dir);
    assert_eq!(pids.len(), 1, "one browser process: {pids:?}");
    // A page that takes 1.5 s to arrive; kill the browser while it loads.
    let slow = daemon.url(&format!(
        "/api/v1/screenshot?url={}&timeout=15000",
        enc(&page("/slow/1500"))
    ));
    let funded = provision(5);
    let capture = tokio::spawn(client_with_key(&funded.key).get(slow).send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: plain syscall on a PID this test found.
    unsafe {
        libc::kill(pids[0] as libc::pid_t, libc::SIGKILL);
    }
    let response = capture.await.expect("join").expect("response");
    let status = response.status();
    let credits = credits_header(&response);
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "retried on the restarted browser: {body}");
    // One image, one charge: the crash and the retry cost nothing extra.
    assert_eq!(credits, Some(4));
    assert_eq!(audited(&funded.account).await.balance.spent, 1);
    // The next captures succeed on the new browser.
    for _ in 0..3 {
        let ok = get(daemon.url(&format!("/api/v1/screenshot?url={}", enc(&page("/plain")))))
            .await
            .expect("get");
        assert_eq!(ok.status(), 200);
    }
    let new_pids = browser_pids(&daemon.profile_dir);
    assert_eq!(new_pids.len(), 1);
    assert_ne!(new_pids, pids, "a new process");
    let text = daemon.metrics_text().await;
    assert!(
        metric_value(&text, "shotfarm_browser_restarts_total") >= 1.0,
        "{text}"
    );
    let dir = daemon.profile_dir.clone();
    daemon.stop();
    assert!(
        processes_under(&dir).is_empty(),
        "{:?}",
        processes_under(&dir)
    );
}

#[tokio::test]
async fn an_in_process_daemon_stopped_gracefully_leaves_no_chromium() {
    let daemon = Daemon::start(|c| c.farm.browsers = 2);
    daemon.wait_ready(2).await;
    let dir = daemon.profile_dir.clone();
    let ok = get(daemon.url(&format!("/api/v1/screenshot?url={}", enc(&page("/plain")))))
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
    let groups: Vec<u32> = browser_pids(&dir);
    assert_eq!(groups.len(), 2);
    daemon.stop();
    assert!(
        processes_under(&dir).is_empty(),
        "{:?}",
        processes_under(&dir)
    );
    assert!(
        groups.iter().all(|g| !group_alive(*g)),
        "no process left in a browser's group"
    );
}

#[tokio::test]
async fn sigterm_drains_then_leaves_no_chromium() {
    let profiles = tempfile::tempdir().expect("tmp");
    let (mut child, base) = spawn_binary(profiles.path(), &[]);
    wait_ready_at(&base, 2).await;
    let groups = browser_pids(profiles.path());
    assert_eq!(groups.len(), 2);
    // The account first (the first use provisions it, which takes longer than the wait below).
    let _ = super::support::shared_funded();
    // A capture in flight when SIGTERM arrives still completes.
    let slow = tokio::spawn(get(format!(
        "{base}/api/v1/screenshot?url={}",
        enc(&page("/slow/800"))
    )));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let response = slow.await.expect("join").expect("response");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "in-flight capture drained: {body}");
    let status = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(processes_under(profiles.path()).is_empty());
    assert!(groups.iter().all(|g| !group_alive(*g)));
}

#[tokio::test]
async fn sigkill_of_the_daemon_leaves_no_chromium() {
    let profiles = tempfile::tempdir().expect("tmp");
    let (mut child, base) = spawn_binary(profiles.path(), &[]);
    wait_ready_at(&base, 2).await;
    let groups = browser_pids(profiles.path());
    assert_eq!(groups.len(), 2);
    assert!(
        processes_under(profiles.path()).len() > 2,
        "browsers with helpers are running"
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let dir = profiles.path().to_path_buf();
    let gone = eventually(Duration::from_secs(10), || processes_under(&dir).is_empty()).await;
    assert!(gone, "orphans: {:?}", processes_under(&dir));
    // Killed processes linger a moment as zombies until init reaps them.
    let groups_gone = eventually(Duration::from_secs(10), || {
        groups.iter().all(|g| !group_alive(*g))
    })
    .await;
    assert!(groups_gone, "a process is left in a browser's group");
    // The next daemon on the same profile directory removes the dead browsers' profiles.
    // Browser profiles only (the test daemons keep their cache directory here too).
    let profiles_in = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with("shotfarm-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let leftovers = profiles_in(&dir).len();
    assert_eq!(leftovers, 2, "SIGKILL leaves the two profiles behind");
    let (mut next, base) = spawn_binary(&dir, &[]);
    wait_ready_at(&base, 2).await;
    let names = profiles_in(&dir);
    assert_eq!(
        names.len(),
        2,
        "only the new browsers' profiles remain: {names:?}"
    );
    let live: Vec<u32> = browser_pids(&dir);
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|p| !groups.contains(p)));
    next.kill().expect("SIGKILL");
    let _ = next.wait();
}

/// Reads `shotfarm_browser_restarts_total{reason="…"}` from a daemon.
async fn restarts(daemon: &Daemon, reason: &str) -> f64 {
    let text = daemon.metrics_text().await;
    metric_value(
        &text,
        &format!("shotfarm_browser_restarts_total{{reason=\"{reason}\"}}"),
    )
}

/// Waits (up to 10 s) until a restart with `reason` has been counted.
async fn wait_restart(daemon: &Daemon, reason: &str) -> bool {
    for _ in 0..100 {
        if restarts(daemon, reason).await >= 1.0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn policy_recycles_after_n_captures_over_memory_and_after_overruns() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.farm.tabs_per_browser = 1;
        c.farm.recycle_after = 2;
        c.farm.max_overruns = 1;
    });
    daemon.wait_ready(1).await;
    let plain = daemon.url(&format!("/api/v1/screenshot?url={}", enc(&page("/plain"))));
    for _ in 0..2 {
        assert_eq!(get(&plain).await.expect("get").status(), 200);
    }
    assert!(
        wait_restart(&daemon, "recycled").await,
        "recycled after 2 captures"
    );
    daemon.wait_ready(1).await;
    // A page that never loads times out (504) at its own cost: the browser answered every
    // step, so its tab is killed and the browser serves on.
    let hang = daemon.url(&format!(
        "/api/v1/screenshot?url={}&timeout=700",
        enc(&page("/hang"))
    ));
    assert_eq!(get(&hang).await.expect("get").status(), 504);
    assert_eq!(restarts(&daemon, "deadline_overrun").await, 0.0);
    // An overrun in the browser's own work (painting and stitching the 64 Mpx the stitching
    // budget allows, in tiles, takes seconds; the page loads in milliseconds, and the 2 s
    // deadline leaves a loaded machine room for that load) kills the tab and, with
    // max_overruns = 1, recycles the browser.
    let heavy = daemon.url(&format!(
        "/api/v1/screenshot?url={}&full_page=true&device_scale_factor=2&timeout=2000",
        enc(&page("/tall/30000"))
    ));
    assert_eq!(get(&heavy).await.expect("get").status(), 504);
    assert!(
        wait_restart(&daemon, "deadline_overrun").await,
        "overrun recycles the browser"
    );
    daemon.wait_ready(1).await;
    assert_eq!(get(&plain).await.expect("get").status(), 200);
    daemon.stop();

    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.farm.max_browser_memory_mb = 1;
        c.farm.probe_interval_ms = 200;
        c.farm.probe_timeout_ms = 150;
    });
    daemon.wait_ready(1).await;
    assert!(
        wait_restart(&daemon, "memory_limit").await,
        "a browser over its memory limit is restarted"
    );
    daemon.stop();
}

#[tokio::test]
async fn a_browser_that_cannot_start_backs_off_and_is_reported_unhealthy() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.chromium.executable = "/bin/false".into();
        c.farm.restart_backoff_min_ms = 100;
        c.farm.restart_backoff_max_ms = 400;
        c.farm.unhealthy_after = 3;
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed = restarts(&daemon, "launch_failed").await;
    // Back-off 0.1 + 0.2 + 0.4 + 0.4 … s: a handful of attempts in 1.5 s, not a hot loop.
    assert!((3.0..=8.0).contains(&failed), "launch attempts: {failed}");
    let text = daemon.metrics_text().await;
    assert_eq!(
        metric_value(&text, "shotfarm_browsers{state=\"unhealthy\"}"),
        1.0
    );
    let ready = get(daemon.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let refused = get(daemon.url(&format!("/api/v1/screenshot?url={}", enc(&page("/plain")))))
        .await
        .expect("get");
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable");
    daemon.stop();
}

#[tokio::test]
async fn a_renderer_crash_is_answered_fast_instead_of_waiting_out_the_timeout() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.farm.tabs_per_browser = 1;
    });
    daemon.wait_ready(1).await;
    let slow = daemon.url(&format!(
        "/api/v1/screenshot?url={}&timeout=30000",
        enc(&page("/slow/2500"))
    ));
    let started = std::time::Instant::now();
    let funded = provision(5);
    let capture = tokio::spawn(client_with_key(&funded.key).get(slow).send());
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Kill every page renderer of this daemon's browser (not the browser itself).
    let renderers: Vec<u32> = processes_under(&daemon.profile_dir)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("--type=renderer") && !cmd.contains("top-chrome"))
        .map(|(pid, _)| pid)
        .collect();
    assert!(!renderers.is_empty(), "page renderers are running");
    for pid in &renderers {
        // SAFETY: plain syscall on PIDs this test found.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let response = capture.await.expect("join").expect("response");
    let elapsed = started.elapsed();
    let status = response.status();
    // Charged only if an image came back.
    let charged = i64::from(status == 200);
    assert_eq!(credits_header(&response), Some(5 - charged));
    assert_eq!(audited(&funded.account).await.balance.spent, charged);
    let body = response.bytes().await.expect("body");
    // A renderer crash is the page's (it is not retried: a page that kills its renderer would
    // only kill another): 422 page_crashed, free — or 200 if its renderer was not among those
    // killed. Never the 30 s timeout.
    let text = String::from_utf8_lossy(&body);
    assert!(
        status == 200 || (status == 422 && text.contains("\"page_crashed\"")),
        "{status}: {text}"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "answered long before the deadline: {elapsed:?}"
    );
    daemon.wait_ready(1).await;
    let ok = get(daemon.url(&format!("/api/v1/screenshot?url={}", enc(&page("/plain")))))
        .await
        .expect("get");
    assert_eq!(ok.status(), 200, "the farm keeps serving");
    daemon.stop();
}

#[tokio::test]
async fn a_second_signal_quits_at_once_and_leaves_no_chromium() {
    let profiles = tempfile::tempdir().expect("tmp");
    let (mut child, base) = spawn_binary(profiles.path(), &[]);
    wait_ready_at(&base, 2).await;
    let groups = browser_pids(profiles.path());
    // A capture that would hold the drain for its whole 20 s timeout.
    let hang = tokio::spawn(get(format!(
        "{base}/api/v1/screenshot?url={}&timeout=20000",
        enc(&page("/hang"))
    )));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id() as libc::pid_t;
    let started = std::time::Instant::now();
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "quit at once, not after the 5 s grace: {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{status:?}");
    let _ = hang.await;
    let dir = profiles.path().to_path_buf();
    assert!(
        eventually(Duration::from_secs(10), || processes_under(&dir).is_empty()).await,
        "orphans: {:?}",
        processes_under(&dir)
    );
    assert!(
        eventually(Duration::from_secs(10), || groups
            .iter()
            .all(|g| !group_alive(*g)))
        .await
    );
}

#[tokio::test]
async fn every_capture_context_is_closed_on_success_error_and_timeout() {
    // This test asks the browser itself over its DevTools port, which the browsers' own network
    // namespace keeps out of reach: it runs with the browsers on the host's network.
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.farm.tabs_per_browser = 1;
        c.chromium.network_isolation = false;
    });
    daemon.wait_ready(1).await;
    for (query, status) in [
        (format!("url={}", enc(&page("/plain"))), 200),
        (
            format!("url={}&selector=%23none&timeout=1500", enc(&page("/plain"))),
            404,
        ),
        (format!("url={}&timeout=1000", enc(&page("/hang"))), 504),
    ] {
        let response = get(daemon.url(&format!("/api/v1/screenshot?{query}")))
            .await
            .expect("get");
        assert_eq!(response.status(), status, "{query}");
    }
    // Ask the browser itself which pages it has: only blank spares may remain.
    let dir = std::fs::read_dir(&daemon.profile_dir)
        .expect("profiles")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("DevToolsActivePort").exists())
        .expect("a running browser profile");
    let port = std::fs::read_to_string(dir.join("DevToolsActivePort")).expect("port file");
    let port = port.lines().next().expect("port line").trim().to_string();
    let settled = async {
        for _ in 0..50 {
            let targets: Value = get(format!("http://127.0.0.1:{port}/json/list"))
                .await
                .expect("devtools")
                .json()
                .await
                .expect("json");
            let pages: Vec<&str> = targets
                .as_array()
                .expect("list")
                .iter()
                .filter(|t| t["type"] == "page")
                .filter_map(|t| t["url"].as_str())
                .collect();
            if pages.iter().all(|u| *u == "about:blank") && pages.len() <= 3 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(settled.await, "a capture's page outlived its capture");
    daemon.stop();
}
