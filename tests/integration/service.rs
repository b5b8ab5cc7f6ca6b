//! What systemd sees, with a Unix datagram socket standing in for `NOTIFY_SOCKET` and the real
//! binary: `READY=1` only once every browser is warm and Redis answers, `WATCHDOG=1` while the
//! fleet is healthy, `RELOADING=1` … `READY=1` around a SIGHUP reload (packs and limits change
//! in place, a bad file changes nothing), `STOPPING=1` on SIGTERM; and exit status 78 for a bad
//! configuration, which the unit's `RestartPreventExitStatus` names.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{redis_url, spawn_binary_with};

/// The notify socket and every message received so far.
struct Systemd {
    socket: UnixDatagram,
    heard: Vec<String>,
}

impl Systemd {
    fn bind(path: &Path) -> Systemd {
        let socket = UnixDatagram::bind(path).expect("notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Systemd {
            socket,
            heard: Vec::new(),
        }
    }

    /// Reads messages until one has the line `line`, within `limit`; the lines of that message.
    fn until(&mut self, line: &str, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < limit {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                self.heard.push(text.clone());
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                if lines.iter().any(|l| l == line) {
                    return lines;
                }
            }
        }
        panic!("no {line} within {limit:?}; heard {:?}", self.heard);
    }

    /// Every message read within `window` (a bounded look, for "nothing more came").
    fn drain(&mut self, window: Duration) -> Vec<String> {
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < window {
            if let Ok(n) = self.socket.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).to_string());
            }
        }
        self.heard.extend(got.clone());
        got
    }
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn json(url: &str) -> Value {
    reqwest::get(url)
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

/// The shipped configuration with the Starter pack at `cents` and a log level.
fn config_text(cents: i64, level: &str) -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/shotfarm.toml"))
            .expect("shipped config");
    assert!(
        shipped.contains("price_cents = 500"),
        "the Starter pack costs 500"
    );
    shipped
        .replacen("price_cents = 500", &format!("price_cents = {cents}"), 1)
        .replacen("level = \"info\"", &format!("level = \"{level}\""), 1)
}

async fn starter_price(base: &str) -> Value {
    json(&format!("{base}/api/v1/credits/packs")).await[0]["priceCents"].clone()
}

#[tokio::test]
async fn systemd_hears_ready_watchdog_reload_and_stopping() {
    let dir = tempfile::tempdir().expect("tmp");
    let socket_path = dir.path().join("notify");
    let mut systemd = Systemd::bind(&socket_path);
    let config = dir.path().join("shotfarm.toml");
    std::fs::write(&config, config_text(500, "info")).expect("config");
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).expect("profiles");
    let socket = socket_path.to_string_lossy().to_string();
    let config_arg = config.to_string_lossy().to_string();
    let (mut child, base) = spawn_binary_with(
        &profiles,
        &redis_url(),
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "600000")],
        None,
        &["--config", &config_arg],
    );

    // READY=1 comes once both browsers are warm: /readyz agrees at that moment.
    let ready = systemd.until("READY=1", Duration::from_secs(90));
    assert!(
        ready.iter().any(|l| l.starts_with("STATUS=ready: 2 of 2")),
        "{ready:?}"
    );
    let probe = json(&format!("{base}/readyz")).await;
    assert_eq!(probe["browsers_ready"], 2, "{probe}");
    // The watchdog is fed (every 0.3 s here) while the fleet is healthy.
    systemd.until("WATCHDOG=1", Duration::from_secs(5));
    systemd.until("WATCHDOG=1", Duration::from_secs(5));

    // SIGHUP: the new packs apply without a restart.
    assert_eq!(starter_price(&base).await, 500);
    std::fs::write(&config, config_text(700, "debug")).expect("config");
    signal(child.id(), "HUP");
    systemd.until("RELOADING=1", Duration::from_secs(10));
    let again = systemd.until("READY=1", Duration::from_secs(10));
    assert!(
        again.iter().any(|l| l == "STATUS=configuration reloaded"),
        "{again:?}"
    );
    assert_eq!(starter_price(&base).await, 700);

    // A file that does not validate is refused whole; the running configuration stays.
    std::fs::write(
        &config,
        config_text(900, "info") + "\n[farm]\nbrowsrs = 3\n",
    )
    .expect("bad");
    signal(child.id(), "HUP");
    systemd.until("RELOADING=1", Duration::from_secs(10));
    let refused = systemd.until("READY=1", Duration::from_secs(10));
    assert!(refused.iter().any(|l| l.contains("refused")), "{refused:?}");
    assert_eq!(starter_price(&base).await, 700);
    let probe = json(&format!("{base}/readyz")).await;
    assert_eq!(probe["status"], "ready", "{probe}");

    signal(child.id(), "TERM");
    systemd.until("STOPPING=1", Duration::from_secs(10));
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_fleet_that_never_warms_is_never_announced_ready_nor_watched() {
    let dir = tempfile::tempdir().expect("tmp");
    let socket_path = dir.path().join("notify");
    let mut systemd = Systemd::bind(&socket_path);
    let socket = socket_path.to_string_lossy().to_string();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).expect("profiles");
    // A "browser" that exits at once: no browser ever becomes ready.
    let (mut child, base) = spawn_binary_with(
        &profiles,
        &redis_url(),
        &[
            ("NOTIFY_SOCKET", &socket),
            ("WATCHDOG_USEC", "400000"),
            ("SHOTFARM_CHROMIUM__EXECUTABLE", "/bin/false"),
        ],
        None,
        &[],
    );
    // The daemon answers (its listeners are up) ...
    let mut answered = false;
    for _ in 0..100 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the daemon's listeners came up");
    // ... but over ten watchdog periods it says neither READY nor WATCHDOG.
    let heard = systemd.drain(Duration::from_secs(4));
    assert!(
        heard
            .iter()
            .all(|m| !m.lines().any(|l| l == "READY=1" || l == "WATCHDOG=1")),
        "{heard:?}"
    );
    signal(child.id(), "TERM");
    let _ = child.wait();
}

#[test]
fn a_bad_configuration_exits_78_for_check_config_and_serve() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[farm]\nbrowsers = 0\nbrowsrs = 2\n").expect("bad config");
    for args in [vec!["check-config", "--config"], vec!["serve", "--config"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shotfarm"))
            .args(&args)
            .arg(&bad)
            .env_remove("RUST_LOG")
            .output()
            .expect("run shotfarm");
        assert_eq!(out.status.code(), Some(78), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("browsrs"),
            "{args:?} names every problem: {err}"
        );
    }
}

/// The new operator's file with four mistakes: `check-config` and `serve` both exit 78 and
/// name all four in words; a value from the environment names its variable.
#[test]
fn check_config_names_every_mistake_in_words() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("four.toml");
    std::fs::write(
        &bad,
        "[farm]\nbrowsrs = 2\ntabs_per_browser = -1\n\n[server]\nlisten = \"127.0.0.1:80800\"\n\n\
         [capture]\npng_encoder = \"fast\"\n",
    )
    .expect("config");
    for command in ["check-config", "serve"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shotfarm"))
            .args([command, "--config"])
            .arg(&bad)
            .env_remove("RUST_LOG")
            .env("SHOTFARM_LEDGER__SWEEP_INTERVAL_MS", "5")
            .output()
            .expect("run shotfarm");
        assert_eq!(out.status.code(), Some(78), "{command}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for want in [
            "invalid configuration (5 problems):",
            "farm.browsrs: unknown key (did you mean `browsers`?)",
            "farm.tabs_per_browser: must be a whole number of at least 1, got -1",
            "server.listen: `127.0.0.1:80800` is not an address:port",
            "capture.png_encoder: must be one of \"chromium\", \"rust\", got \"fast\"",
            "ledger.sweep_interval_ms (set by SHOTFARM_LEDGER__SWEEP_INTERVAL_MS): must be a \
             whole number of at least 10, got 5",
        ] {
            assert!(err.contains(want), "{command}: missing {want:?} in:\n{err}");
        }
        assert!(!err.contains("``"), "{command}: doubled quoting in:\n{err}");
    }
}
