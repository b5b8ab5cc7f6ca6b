//! Pages that attack the fleet rather than render: WebRTC sending UDP (and ICE over TCP) to a
//! refused address, frames that can never load, pages that navigate themselves somewhere
//! refused, a memory bomb. Each must reach nothing the policy refuses, cost at most the browser
//! it ran in, and be answered quickly with a clear code — charged only for a real image.
//!
//! The daemons here allow exactly `127.0.0.3/32`, where the hostile site lives; the "inside" is
//! on `127.0.0.1`, refused.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use warp::Filter;

use super::support::{
    audited, browser_pids, client_with_key, credits_header, enc, metric_value, provision,
    serve_site, Daemon, TestBrowser,
};

/// Every restart the daemon has made, whatever the reason.
async fn restarts(daemon: &Daemon) -> f64 {
    let text = daemon.metrics_text().await;
    [
        "cdp_disconnected",
        "deadline_overrun",
        "launch_failed",
        "memory_limit",
        "process_exited",
        "recycled",
        "unresponsive",
    ]
    .iter()
    .map(|r| {
        metric_value(
            &text,
            &format!("shotfarm_browser_restarts_total{{reason=\"{r}\"}}"),
        )
    })
    .sum()
}

/// Counts UDP datagrams and TCP connections arriving on 127.0.0.1.
struct Inside {
    udp: SocketAddr,
    tcp: SocketAddr,
    datagrams: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Inside {
    fn start() -> Inside {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let udp = socket.local_addr().expect("udp addr");
        let datagrams = Arc::new(AtomicUsize::new(0));
        let count = datagrams.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while socket.recv_from(&mut buf).is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let tcp = listener.local_addr().expect("tcp addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stream.is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Inside {
            udp,
            tcp,
            datagrams,
            connections,
        }
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.datagrams.load(Ordering::SeqCst),
            self.connections.load(Ordering::SeqCst),
        )
    }
}

/// A page that speaks WebRTC every way that could leave the browser: STUN and TURN-over-UDP
/// servers on the inside, a peer connection whose ICE checks go to an inside UDP candidate and
/// an inside ICE-TCP candidate. `#done` appears after 4 s, time enough for all of it.
fn webrtc_page(udp: u16, tcp: u16) -> String {
    format!(
        r#"<!doctype html><html><body style="margin:0;background:#fff">webrtc
<script>
  setTimeout(() => {{
    const d = document.createElement('div'); d.id = 'done'; document.body.appendChild(d);
  }}, 4000);
  (async () => {{
    const servers = [
      {{urls: 'stun:127.0.0.1:{udp}'}},
      {{urls: 'turn:127.0.0.1:{udp}?transport=udp', username: 'u', credential: 'p'}},
    ];
    const a = new RTCPeerConnection({{iceServers: servers}});
    const b = new RTCPeerConnection();
    a.createDataChannel('x');
    a.onicecandidate = (e) => {{ if (e.candidate) b.addIceCandidate(e.candidate).catch(() => {{}}); }};
    b.onicecandidate = (e) => {{ if (e.candidate) a.addIceCandidate(e.candidate).catch(() => {{}}); }};
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    for (const c of [
      'candidate:1 1 udp 2122260223 127.0.0.1 {udp} typ host',
      'candidate:2 1 tcp 1518280447 127.0.0.1 {tcp} typ host tcptype passive',
    ]) {{
      await a.addIceCandidate({{candidate: c, sdpMid: '0', sdpMLineIndex: 0}}).catch(() => {{}});
    }}
  }})().catch(() => {{}});
</script></body></html>"#
    )
}

/// The hostile site on 127.0.0.3.
fn site() -> SocketAddr {
    static SITE: OnceLock<SocketAddr> = OnceLock::new();
    *SITE.get_or_init(|| {
        serve_site("127.0.0.3:0", |_| {
            let webrtc = warp::path!("webrtc" / u16 / u16)
                .map(|udp, tcp| warp::reply::html(webrtc_page(udp, tcp)));
            let frame = warp::path!("frame" / String).map(|kind: String| {
                let src = match kind.as_str() {
                    "file" => "file:///etc/passwd",
                    "chrome" => "chrome://version",
                    _ => "view-source:http://127.0.0.3/",
                };
                warp::reply::html(format!(
                    "<!doctype html><body style='margin:0;background:#fff'>framed \
                 <iframe src='{src}' width='100' height='50'></iframe></body>"
                ))
            });
            let meta = warp::path!("meta")
                .and(warp::query::<std::collections::HashMap<String, String>>())
                .map(|q: std::collections::HashMap<String, String>| {
                    let to = q.get("to").cloned().unwrap_or_default();
                    let wait = q.get("after").cloned().unwrap_or_else(|| "0".into());
                    warp::reply::html(format!(
                        "<!doctype html><head><meta http-equiv='refresh' \
                     content='{wait};url={to}'></head><body>leaving</body>"
                    ))
                });
            let plain = warp::path!("plain").map(|| {
                warp::reply::html(
                    "<!doctype html><body style='margin:0;background:#fff'>plain</body>"
                        .to_string(),
                )
            });
            let bomb = warp::path!("bomb").map(|| {
                warp::reply::html(
                    "<!doctype html><body>bomb<script>\
                 const hog = []; \
                 for (;;) { hog.push(new Array(1 << 20).fill(hog.length)); }\
                 </script></body>"
                        .to_string(),
                )
            });
            // A page whose load never ends: an image that is never answered.
            let never = warp::path!("never").map(|| {
                warp::reply::html(
                    "<!doctype html><body>waiting<img src='/stall'></body>".to_string(),
                )
            });
            let nothing = warp::path!("nothing")
                .map(|| warp::reply::with_status("", warp::http::StatusCode::NO_CONTENT));
            let stall = warp::path!("stall").then(|| async {
                std::future::pending::<()>().await;
                String::new()
            });
            webrtc
                .or(frame)
                .or(meta)
                .or(plain)
                .or(bomb)
                .or(never)
                .or(nothing)
                .or(stall)
        })
    })
}

fn site_url(path: &str) -> String {
    format!("http://{}{}", site(), path)
}

/// The strict daemon: production policy plus the hostile site.
fn strict() -> &'static Daemon {
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        Daemon::start(|c| {
            c.egress.allow = vec!["127.0.0.3/32".to_string()];
        })
    })
}

/// A capture of `path` on the hostile site, with `query` appended (`&timeout=…`).
async fn capture(key: &reqwest::Client, d: &Daemon, path: &str, query: &str) -> reqwest::Response {
    key.get(d.url(&format!(
        "/api/v1/screenshot?url={}{query}",
        enc(&site_url(path))
    )))
    .send()
    .await
    .expect("capture")
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn webrtc_sends_nothing_to_a_refused_address_by_udp_or_tcp() {
    let inside = Inside::start();
    let funded = provision(2);
    let key = client_with_key(&funded.key);
    let page = site_url(&format!(
        "/webrtc/{}/{}",
        inside.udp.port(),
        inside.tcp.port()
    ));
    let capture = |daemon: &Daemon| {
        key.get(daemon.url(&format!(
            "/api/v1/screenshot?url={}&wait_for_selector=%23done&width=300&height=200",
            enc(&page)
        )))
        .send()
    };

    let r = capture(strict()).await.expect("capture");
    assert_eq!(r.status(), 200, "the page itself is captured");
    assert_eq!(credits_header(&r), Some(1));
    // Late ICE retransmissions would still be on their way: give them a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        inside.counts(),
        (0, 0),
        "no datagram and no connection from an isolated browser"
    );

    // The control: the same page in a plain browser of the same engine on the host's network
    // (no proxy, no WebRTC policy flag) does send to the inside — so the page really tries, and
    // the daemon's placement is what stops it.
    let plain = TestBrowser::launch("webrtc-control").await;
    let _tab = plain.page(&page).await;
    let reached = Instant::now();
    while inside.counts().0 == 0 && reached.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        inside.counts().0 > 0,
        "a browser on the host's network sends the page's STUN and ICE datagrams to the inside"
    );
    plain.close().await;
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.balance.spent), (1, 1));
}

#[tokio::test]
async fn frames_that_can_never_load_do_not_hold_the_capture() {
    let funded = provision(3);
    let key = client_with_key(&funded.key);
    let d = strict();
    let restarts_before = restarts(d).await;
    for kind in ["file", "chrome", "view-source"] {
        // A 20 s timeout: a capture held by the frame would end 504 `timeout`.
        let r = capture(
            &key,
            d,
            &format!("/frame/{kind}"),
            "&timeout=20000&width=300&height=200",
        )
        .await;
        let status = r.status();
        let credits = credits_header(&r);
        let body = r.bytes().await.expect("body");
        assert_eq!(status, 200, "{kind}: {}", String::from_utf8_lossy(&body));
        assert_eq!(
            &body[..4],
            b"\x89PNG",
            "{kind}: an image of the page, its frame empty"
        );
        assert!(credits.is_some(), "{kind}: charged like any image");
    }
    assert_eq!(restarts(d).await, restarts_before, "no browser restarted");
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.balance.spent), (0, 3));
}

#[tokio::test]
async fn pages_that_never_finish_loading_time_out_without_restarting_the_browser() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 1;
        c.farm.tabs_per_browser = 1;
        c.farm.max_overruns = 2;
        c.egress.allow = vec!["127.0.0.3/32".to_string()];
    });
    daemon.wait_ready(1).await;
    let browsers = browser_pids(&daemon.profile_dir);
    let funded = provision(1);
    let key = client_with_key(&funded.key);
    // Twice max_overruns in a row: before, each counted against the browser.
    for _ in 0..4 {
        let r = capture(&key, &daemon, "/never", "&timeout=1500").await;
        assert_eq!(credits_header(&r), Some(1), "a timeout is free");
        let (status, body) = json_of(r).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (504, Some("timeout")),
            "{body}"
        );
    }
    assert_eq!(
        restarts(&daemon).await,
        0.0,
        "the page's timeouts cost no restart"
    );
    assert_eq!(
        browser_pids(&daemon.profile_dir),
        browsers,
        "the same browser serves on"
    );
    let r = capture(&key, &daemon, "/plain", "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(credits_header(&r), Some(0));
    daemon.stop();
}

#[tokio::test]
async fn a_memory_bomb_crashes_only_its_own_renderer_and_is_answered_at_once() {
    let daemon = Daemon::start(|c| {
        c.farm.browsers = 2;
        c.egress.allow = vec!["127.0.0.3/32".to_string()];
    });
    daemon.wait_ready(2).await;
    let browsers = browser_pids(&daemon.profile_dir);
    let funded = provision(2);
    let key = client_with_key(&funded.key);
    let r = capture(&key, &daemon, "/bomb", "&timeout=30000").await;
    assert_eq!(credits_header(&r), Some(2), "free");
    let (status, body) = json_of(r).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "page_crashed", "{body}");
    assert!(body["request_id"].is_string());
    // Not retried elsewhere, so no browser went down with it.
    assert_eq!(restarts(&daemon).await, 0.0, "no browser restarted");
    assert_eq!(browser_pids(&daemon.profile_dir), browsers);
    let r = capture(&key, &daemon, "/plain", "").await;
    assert_eq!(r.status(), 200, "the fleet serves on");
    assert_eq!(credits_header(&r), Some(1));
    audited(&funded.account).await;
    daemon.stop();
}

#[tokio::test]
async fn a_page_that_navigates_itself_somewhere_refused_is_a_free_502() {
    let funded = provision(2);
    let key = client_with_key(&funded.key);
    let d = strict();
    let plain = site_url("/plain");
    for (what, query) in [
        (
            "meta refresh",
            format!("url={}", enc(&site_url("/meta?to=http://10.0.0.1/"))),
        ),
        (
            "meta refresh during the delay",
            format!(
                "url={}&delay=2000",
                enc(&site_url("/meta?to=http://127.0.0.1:9/&after=1"))
            ),
        ),
        (
            "js sets location",
            format!(
                "url={}&js={}",
                enc(&plain),
                enc("location = 'http://127.0.0.1:9/'")
            ),
        ),
        (
            "js sets location later",
            format!(
                "url={}&delay=1500&js={}",
                enc(&plain),
                enc("setTimeout(() => { location = 'http://169.254.169.254/' }, 200)")
            ),
        ),
    ] {
        let r = key
            .get(d.url(&format!("/api/v1/screenshot?{query}&timeout=15000")))
            .send()
            .await
            .expect("capture");
        assert_eq!(credits_header(&r), Some(2), "{what}: free");
        let (status, body) = json_of(r).await;
        assert_eq!(status, 502, "{what}: {body}");
        assert_eq!(body["error"]["code"], "navigation_failed", "{what}: {body}");
    }
    // The control: a script that navigates to an allowed page gets that page, charged.
    let r = key
        .get(d.url(&format!(
            "/api/v1/screenshot?url={}&js={}",
            enc(&plain),
            enc(&format!("location = '{}'", site_url("/frame/file")))
        )))
        .send()
        .await
        .expect("capture");
    assert_eq!(r.status(), 200);
    assert_eq!(credits_header(&r), Some(1));
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.balance.spent), (1, 1));
}

#[tokio::test]
async fn navigations_that_leave_the_document_in_place_do_not_hold_the_capture() {
    let funded = provision(3);
    let key = client_with_key(&funded.key);
    let d = strict();
    let plain = site_url("/plain");
    for (what, js) in [
        ("a fragment", "location.hash = '#part'"),
        (
            "a new window",
            "window.open(location.href + '?popup', '_blank')",
        ),
        ("a download-like 204", "location = '/nothing'"),
    ] {
        let r = key
            .get(d.url(&format!(
                "/api/v1/screenshot?url={}&js={}&timeout=15000",
                enc(&plain),
                enc(js)
            )))
            .send()
            .await
            .expect("capture");
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{what}: {body}");
    }
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.balance.spent), (0, 3));
}

/// `Seccomp:` of a process (2 = a seccomp-bpf filter, as Chromium's sandbox installs).
fn seccomp_mode(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

fn namespace_of(pid: u32, kind: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

#[tokio::test]
async fn an_unprivileged_daemon_sandboxes_its_renderers_in_a_network_of_their_own() {
    use std::os::unix::fs::chown;
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    // The daemon as `nobody`, the way the systemd unit runs it (a user without privileges):
    // its own user namespace, the browsers' network namespace, and Chromium's sandbox.
    let home = tempfile::tempdir().expect("tmp");
    let profiles = home.path().join("profiles");
    std::fs::create_dir(&profiles).expect("profiles dir");
    chown(home.path(), Some(NOBODY), Some(NOBODY)).expect("chown home");
    chown(&profiles, Some(NOBODY), Some(NOBODY)).expect("chown profiles");
    // A copy `nobody` can run, wherever the checkout lives (its parents may be closed to others).
    let binary = home.path().join("shotfarm");
    std::fs::copy(env!("CARGO_BIN_EXE_shotfarm"), &binary).expect("copy the binary");
    let api = format!("127.0.0.1:{}", super::support::free_port());
    let metrics = format!("127.0.0.1:{}", super::support::free_port());
    let child = std::process::Command::new(&binary)
        .args(["serve", "--listen", &api, "--metrics-listen", &metrics])
        .args(["--allow-egress", "127.0.0.3/32"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .env("SHOTFARM_CHROMIUM__PROFILE_DIR", &profiles)
        .env("SHOTFARM_REDIS__URL", super::redis_server::redis_url())
        .env("SHOTFARM_FARM__BROWSERS", "1")
        .env("SHOTFARM_SERVER__SHUTDOWN_GRACE_MS", "2000")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn shotfarm as nobody");
    let mut child = super::support::ChildGuard(child);
    let base = format!("http://{api}");
    super::support::wait_ready_at(&base, 1).await;

    // The renderers are read while a capture holds its page (a 2 s `delay`): a spare context
    // need not have a renderer yet, and a finished capture's renderer exits with its context.
    let funded = provision(1);
    let capture = tokio::spawn(
        client_with_key(&funded.key)
            .get(format!(
                "{base}/api/v1/screenshot?url={}&delay=2000",
                enc(&site_url("/plain"))
            ))
            .send(),
    );
    let mut processes = Vec::new();
    for _ in 0..100 {
        processes = super::support::processes_under(&profiles);
        if processes
            .iter()
            .any(|(_, cmd)| cmd.contains("--type=renderer"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let browser = processes
        .iter()
        .find(|(_, cmd)| !cmd.contains("--type="))
        .expect("a browser process");
    assert!(
        !browser.1.contains("--no-sandbox"),
        "the browser runs with its sandbox: {}",
        browser.1
    );
    let renderers: Vec<u32> = processes
        .iter()
        .filter(|(_, cmd)| cmd.contains("--type=renderer"))
        .map(|(pid, _)| *pid)
        .collect();
    assert!(!renderers.is_empty(), "renderers are running");
    for pid in &renderers {
        assert_eq!(
            seccomp_mode(*pid),
            Some(2),
            "renderer {pid} runs under seccomp-bpf"
        );
    }
    let r = capture.await.expect("join").expect("capture");
    assert_eq!(r.status(), 200, "captures work sandboxed");
    assert_eq!(credits_header(&r), Some(0));
    let daemon = child.id();
    let own = std::process::id();
    assert_ne!(
        namespace_of(daemon, "user"),
        namespace_of(own, "user"),
        "the daemon made a user namespace of its own"
    );
    assert_eq!(
        namespace_of(daemon, "net"),
        namespace_of(own, "net"),
        "the daemon itself stays on the host's network"
    );
    assert_ne!(
        namespace_of(browser.0, "net"),
        namespace_of(own, "net"),
        "the browser runs in a network of its own"
    );
    // SAFETY: plain syscall on the child this test started.
    unsafe {
        libc::kill(daemon as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "a clean stop: {status:?}");
    assert!(
        super::support::processes_under(&profiles).is_empty(),
        "no Chromium left"
    );
}
