//! Fixtures and helpers shared by the benches.

/// True when `cargo bench` runs this binary (it passes `--bench`). `cargo test --all-targets`
/// runs bench binaries without it: there, a bench only checks that it builds.
pub fn invoked_by_cargo_bench() -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        println!("benchmark skipped: run it with `cargo bench` (or `make bench`)");
    }
    yes
}

/// A deterministic ~50 KB marketing-style page: header, hero, feature cards with inline SVG,
/// long text sections, a pricing table and a footer. No external requests.
pub fn landing_page() -> String {
    const WORDS: &[&str] = &[
        "cloud",
        "render",
        "fleet",
        "browser",
        "capture",
        "pixel",
        "latency",
        "queue",
        "secure",
        "scale",
        "deploy",
        "team",
        "workflow",
        "insight",
        "metric",
        "archive",
        "preview",
        "social",
        "card",
        "thumbnail",
        "design",
        "quality",
        "reliable",
        "fast",
        "simple",
        "private",
        "api",
        "request",
        "response",
        "image",
        "format",
        "viewport",
        "screen",
        "daily",
        "monitor",
    ];
    let mut seed: u64 = 0x5eed_1234_abcd;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let sentence = |n: usize, next: &mut dyn FnMut() -> usize| {
        let mut s = String::new();
        for i in 0..n {
            let w = WORDS[next() % WORDS.len()];
            if i == 0 {
                let mut c = w.chars();
                s.extend(c.next().map(|c| c.to_ascii_uppercase()));
                s.push_str(c.as_str());
            } else {
                s.push(' ');
                s.push_str(w);
            }
        }
        s.push('.');
        s
    };
    let mut html = String::with_capacity(56_000);
    html.push_str(
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme Shots — screenshots at scale</title>
<style>
*{box-sizing:border-box}body{margin:0;font:16px/1.6 "DejaVu Sans",Arial,sans-serif;color:#1d2433;background:#f6f8fb}
header{display:flex;align-items:center;justify-content:space-between;padding:18px 48px;background:#fff;box-shadow:0 1px 4px rgba(0,0,0,.08)}
header nav a{margin-left:24px;color:#3b4a66;text-decoration:none;font-weight:600}
.hero{padding:72px 48px;background:linear-gradient(135deg,#4f46e5 0%,#06b6d4 60%,#22c55e 100%);color:#fff}
.hero h1{font-size:48px;line-height:1.1;margin:0 0 16px}.hero p{font-size:20px;max-width:720px;opacity:.92}
.btn{display:inline-block;padding:12px 22px;border-radius:8px;background:#fff;color:#4f46e5;font-weight:700;margin-right:12px}
.btn.ghost{background:transparent;color:#fff;border:2px solid rgba(255,255,255,.7)}
.cards{display:grid;grid-template-columns:repeat(3,1fr);gap:24px;padding:48px}
.card{background:#fff;border-radius:14px;padding:24px;box-shadow:0 6px 18px rgba(31,41,55,.08);border-top:4px solid var(--c)}
.card h3{margin:12px 0 8px}.card p{color:#526079;font-size:15px}
section{padding:32px 48px;max-width:1100px}section h2{font-size:30px;margin:0 0 12px;color:#111827}
section p{color:#39465e}.quote{border-left:4px solid #06b6d4;padding:12px 20px;background:#ecfeff;border-radius:0 10px 10px 0;font-style:italic}
table{border-collapse:collapse;width:100%;margin:16px 0;background:#fff}th,td{padding:10px 14px;border-bottom:1px solid #e5e7eb;text-align:left}
th{background:#f1f5f9}.badge{display:inline-block;padding:2px 10px;border-radius:999px;background:#eef2ff;color:#4338ca;font-size:13px}
footer{padding:40px 48px;background:#0f172a;color:#cbd5e1}footer a{color:#93c5fd}
</style></head><body>
<header><strong style="font-size:22px;color:#4f46e5">&#9673; Acme Shots</strong><nav><a href="#">Product</a><a href="#">Pricing</a><a href="#">Docs</a><a href="#">Blog</a><a href="#">Sign in</a></nav></header>
<div class="hero"><h1>Pixel-perfect screenshots of any page, at fleet scale</h1>
<p>"##,
    );
    html.push_str(&sentence(28, &mut next));
    html.push_str(r#"</p><p><span class="btn">Start free</span><span class="btn ghost">Read the docs</span></p></div>"#);
    let colors = [
        "#4f46e5", "#06b6d4", "#22c55e", "#f59e0b", "#ef4444", "#8b5cf6",
    ];
    html.push_str(r#"<div class="cards">"#);
    for (i, c) in colors.iter().enumerate() {
        html.push_str(&format!(
            r#"<div class="card" style="--c:{c}"><svg width="56" height="56" viewBox="0 0 56 56"><rect rx="12" width="56" height="56" fill="{c}" opacity=".15"/><circle cx="28" cy="28" r="{r}" fill="{c}"/><path d="M14 40 L28 16 L42 40 Z" fill="none" stroke="white" stroke-width="3"/></svg><h3>{title}</h3><p>{body}</p></div>"#,
            r = 10 + i * 2,
            title = sentence(3, &mut next),
            body = sentence(30, &mut next),
        ));
    }
    html.push_str("</div>");
    let mut section = 0;
    while html.len() < 48_000 {
        section += 1;
        html.push_str(&format!("<section><h2>{}</h2>", sentence(5, &mut next)));
        for _ in 0..3 {
            html.push_str(&format!("<p>{}</p>", sentence(60, &mut next)));
        }
        if section % 2 == 0 {
            html.push_str(&format!(
                r#"<p class="quote">{}</p>"#,
                sentence(24, &mut next)
            ));
        } else {
            html.push_str(
                "<table><tr><th>Plan</th><th>Captures / month</th><th>Price</th><th></th></tr>",
            );
            for (j, plan) in ["Hobby", "Team", "Business", "Enterprise"]
                .iter()
                .enumerate()
            {
                html.push_str(&format!(
                    r#"<tr><td>{plan}</td><td>{}</td><td>${}</td><td><span class="badge">{}</span></td></tr>"#,
                    (j + 1) * 10_000,
                    (j + 1) * 29,
                    sentence(2, &mut next)
                ));
            }
            html.push_str("</table>");
        }
        html.push_str(&format!(
            r#"<svg width="1000" height="80" viewBox="0 0 1000 80"><defs><linearGradient id="g{section}" x1="0" x2="1"><stop offset="0" stop-color="{}"/><stop offset="1" stop-color="{}"/></linearGradient></defs><rect width="1000" height="80" rx="10" fill="url(#g{section})"/><polyline points="0,60 120,30 260,50 400,12 560,44 700,20 860,52 1000,26" fill="none" stroke="white" stroke-width="3"/></svg>"#,
            colors[section % colors.len()],
            colors[(section + 2) % colors.len()]
        ));
        html.push_str("</section>");
    }
    html.push_str(r##"<footer><p>&copy; Acme Shots. <a href="#">Privacy</a> · <a href="#">Terms</a> · <a href="#">Status</a></p></footer></body></html>"##);
    html
}

/// A command whose process the kernel kills when this bench's main thread dies (the death
/// signal follows the thread that forked: spawn only from the main thread).
pub fn with_death_signal(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// A private redis-server, killed on drop (and by the kernel if this process dies first).
pub struct RedisServer {
    pub child: std::process::Child,
    pub url: String,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free port. Call from the main thread: PR_SET_PDEATHSIG follows the
    /// thread that forked, and the main thread lives as long as the bench.
    pub fn start(appendonly: bool) -> anyhow::Result<RedisServer> {
        Self::start_with(appendonly, &[])
    }

    /// Like [`RedisServer::start`], with more `redis-server` arguments (e.g. cluster mode).
    pub fn start_with(appendonly: bool, extra: &[&str]) -> anyhow::Result<RedisServer> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        if appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.args(extra)
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = with_death_signal(&mut cmd).spawn().map_err(|e| {
            anyhow::anyhow!("cannot start redis-server (`make test` installs it): {e}")
        })?;
        // Built first, so an early return below kills it.
        let server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
            port,
            _dir: dir,
        };
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > std::time::Duration::from_secs(10) {
                anyhow::bail!("redis-server on port {port} did not start");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A spawned daemon binary with its log file: SIGTERM, a bounded wait for its exit, the end of
/// its log; SIGKILLed on drop if still running.
pub struct Spawned {
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn sigterm(&self) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our live child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > limit {
                anyhow::bail!("pid {} did not exit within {limit:?}", self.child.id());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `shotfarm serve` (the real binary) on the given loopback ports, with its own profile
/// directory, loopback egress allowed, rate limits out of the way, a 10 s drain, and its
/// output in `log`. The caller adds the Redis and anything else, then spawns it.
pub fn serve_command(
    api: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
    profiles: &std::path::Path,
    log: &std::path::Path,
) -> anyhow::Result<std::process::Command> {
    let out = std::fs::File::create(log)?;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shotfarm"));
    cmd.args(["serve", "--listen", &api.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        .args(["--allow-egress", "127.0.0.0/8"])
        .env("SHOTFARM_CHROMIUM__PROFILE_DIR", profiles)
        .env("SHOTFARM_LIMITS__REQUESTS_PER_MINUTE", "6000000")
        .env("SHOTFARM_LIMITS__BURST", "100000")
        .env("SHOTFARM_SERVER__SHUTDOWN_GRACE_MS", "10000")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    Ok(cmd)
}

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Clock ticks per second (`/proc` CPU times are in ticks).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// What the benches read of `/proc/PID/stat`.
pub struct ProcStat {
    pub ppid: u32,
    pub pgrp: u32,
    /// utime + stime, in ticks.
    pub own: u64,
    /// cutime + cstime (children it has reaped), in ticks.
    pub reaped: u64,
}

/// Parses a `stat` file (`/proc/PID/stat`, `/proc/self/task/TID/stat`).
pub fn read_stat(path: &str) -> Option<ProcStat> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces and parentheses: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // After the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime.
    Some(ProcStat {
        ppid: n(1)? as u32,
        pgrp: n(2)? as u32,
        own: n(11)? + n(12)?,
        reaped: n(13)? + n(14)?,
    })
}

/// Every process's stat, zombies included (their time is theirs until reaped).
pub fn process_table() -> std::collections::HashMap<u32, ProcStat> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, read_stat(&format!("/proc/{pid}/stat"))?)))
        .collect()
}

/// `seeds` and all their descendants in `table` (by ppid links).
pub fn descendants(
    table: &std::collections::HashMap<u32, ProcStat>,
    mut seeds: Vec<u32>,
) -> std::collections::HashSet<u32> {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for (&pid, stat) in table {
        children.entry(stat.ppid).or_default().push(pid);
    }
    let mut chosen = std::collections::HashSet::new();
    while let Some(pid) = seeds.pop() {
        if chosen.insert(pid) {
            seeds.extend(children.get(&pid).into_iter().flatten().copied());
        }
    }
    chosen
}
