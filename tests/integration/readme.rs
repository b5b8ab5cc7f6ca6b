//! The first ten minutes of a new user, as the README tells them: its shell examples run as
//! written against a daemon set up the way `make run` sets it up, and the daemon's log written
//! to a file is plain text.
//!
//! Every ```` ```sh ```` block of README.md is either run, when the line before it is
//! `<!-- readme-test: CHECK; CHECK … -->`, or visibly not run, when its first line is
//! `# not run by the README test: WHY`. A block that is neither fails this test. Checks:
//! `png FILE`, `webp FILE` (the file exists, is not empty, and has that format's magic bytes),
//! `stdout TEXT` (the block printed TEXT). Only the API address (127.0.0.1:8080) and the demo
//! page's port (8000) are replaced, by free ones; the blocks run with bash in a directory whose
//! `var/demo-key` and `var/demo-password` were made like `make run` makes them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, redis_url, wait_ready_at, ChildGuard, Daemon};

const README: &str = include_str!("../../README.md");
const SKIP: &str = "# not run by the README test:";
const DEMO_EMAIL: &str = "demo@shotfarm.localhost";

#[derive(Debug)]
struct Block {
    line: usize,
    text: String,
    /// `None`: not run (the reason is the block's first line).
    checks: Option<Vec<(String, String)>>,
}

fn sh_blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```sh" {
            i += 1;
            continue;
        }
        let start = i;
        let end = (start + 1..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .unwrap_or_else(|| panic!("README.md:{}: unclosed ```sh block", start + 1));
        let text = lines[start + 1..end].join("\n");
        let marker = start
            .checked_sub(1)
            .and_then(|j| lines[j].trim().strip_prefix("<!-- readme-test:"))
            .and_then(|m| m.strip_suffix("-->"));
        let checks = marker.map(|m| {
            m.split(';')
                .filter(|c| !c.trim().is_empty())
                .map(|c| {
                    let (kind, arg) = c.trim().split_once(' ').unwrap_or((c.trim(), ""));
                    (kind.to_string(), arg.trim().to_string())
                })
                .collect::<Vec<_>>()
        });
        assert!(
            checks.is_some() || text.starts_with(SKIP),
            "README.md:{}: a ```sh block must be run (`<!-- readme-test: … -->` on the line \
             before) or say why not (first line `{SKIP} …`)",
            start + 1
        );
        blocks.push(Block {
            line: start + 1,
            text,
            checks,
        });
        i = end + 1;
    }
    blocks
}

/// Runs `f` on a thread of its own (the operator's actix system cannot start inside the
/// test's runtime).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// The operator CLI, as `make run` calls it.
fn shotfarm(args: &[&str], dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shotfarm"))
        .args(args)
        .args(["--redis-url", &redis_url()])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run shotfarm");
    assert!(out.status.success(), "shotfarm {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Process groups of the blocks (a block may leave a server running, as in a user's shell),
/// killed when the test ends, however it ends.
struct Groups(Vec<i32>);

impl Drop for Groups {
    fn drop(&mut self) {
        for &pgid in &self.0 {
            // SAFETY: killpg only sends a signal to a process group this test started.
            unsafe {
                libc::killpg(pgid, libc::SIGTERM);
            }
        }
    }
}

fn has_magic(path: &Path, magic: &[&[u8]]) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    let mut at = 0;
    for part in magic {
        // A part of `b""` skips 4 bytes (the RIFF size).
        if part.is_empty() {
            at += 4;
            continue;
        }
        if bytes.get(at..at + part.len()) != Some(part) {
            return Err(format!(
                "{} does not start like the format it should have ({} bytes)",
                path.display(),
                bytes.len()
            ));
        }
        at += part.len();
    }
    Ok(())
}

#[tokio::test]
async fn the_readme_examples_run_as_written() {
    let blocks = sh_blocks(README);
    let run: Vec<&Block> = blocks.iter().filter(|b| b.checks.is_some()).collect();
    for b in blocks.iter().filter(|b| b.checks.is_none()) {
        let why = b.text.lines().next().unwrap_or_default();
        eprintln!(
            "README.md:{}: not run ({})",
            b.line,
            why.trim_start_matches(SKIP).trim()
        );
    }
    assert!(
        run.len() >= 3,
        "the quick start, the balance and the screenshot examples are run: {blocks:?}"
    );

    // The daemon as `make run` starts it: the shipped configuration (its limits too), plus
    // loopback allowed through the egress policy for the demo page. One browser is enough.
    let daemon = Daemon::start(|c| {
        let shipped = shotfarm::config::Config::default();
        c.limits = shipped.limits;
        c.farm.browsers = 1;
    });
    let api = daemon.bound.api.to_string();
    daemon.wait_ready(1).await;

    // The demo account, its password and key, the way `make run` makes them.
    let dir = tempfile::tempdir().expect("work dir");
    let cwd = dir.path().to_path_buf();
    std::fs::create_dir_all(cwd.join("var")).expect("var");
    let password = format!("demo-{}", uuid::Uuid::new_v4().simple());
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(cwd.join("var/demo-password"))
            .expect("demo-password");
        writeln!(f, "{password}").expect("write password");
    }
    let key = blocking({
        let cwd = cwd.clone();
        move || {
            let made = Command::new(env!("CARGO_BIN_EXE_shotfarm"))
                .args(["accounts", "show", "--account", DEMO_EMAIL])
                .args(["--redis-url", &redis_url()])
                .output()
                .expect("run shotfarm");
            if !made.status.success() {
                shotfarm(
                    &[
                        "accounts",
                        "create",
                        "--email",
                        DEMO_EMAIL,
                        "--credits",
                        "95",
                    ],
                    &cwd,
                );
            }
            let said = shotfarm(
                &[
                    "accounts",
                    "set-password",
                    "--account",
                    DEMO_EMAIL,
                    "--password-file",
                    "var/demo-password",
                ],
                &cwd,
            );
            assert!(said.contains("password set"), "{said}");
            let out = shotfarm(
                &[
                    "keys",
                    "create",
                    "--account",
                    DEMO_EMAIL,
                    "--name",
                    "make run",
                ],
                &cwd,
            );
            out.lines().nth(1).unwrap_or_default().to_string()
        }
    })
    .await;
    assert!(key.starts_with("sk_"), "{key}");
    std::fs::write(cwd.join("var/demo-key"), format!("{key}\n")).expect("demo-key");

    let page_port = free_port();
    let mut groups = Groups(Vec::new());
    for block in run {
        let script = block
            .text
            .replace("127.0.0.1:8080", &api)
            .replace("127.0.0.1:8000", &format!("127.0.0.1:{page_port}"))
            .replace("http.server 8000", &format!("http.server {page_port}"));
        let stdout_path = cwd.join(format!("block-{}.out", block.line));
        let stderr_path = cwd.join(format!("block-{}.err", block.line));
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new("bash")
                .args(["-euo", "pipefail", "-c", &script])
                .current_dir(&cwd)
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
                .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
                .spawn()
                .expect("bash")
        };
        groups.0.push(child.id() as i32);
        let mut child = ChildGuard(child);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "README.md:{}: still running after 90 s",
                block.line
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let context = format!(
            "README.md:{} ({status}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            block.line
        );
        assert!(status.success(), "{context}");
        for (kind, arg) in block.checks.iter().flatten() {
            let verdict = match kind.as_str() {
                "png" => has_magic(&cwd.join(arg), &[b"\x89PNG\r\n\x1a\n"]),
                "webp" => has_magic(&cwd.join(arg), &[b"RIFF", b"", b"WEBP"]),
                "stdout" if stdout.contains(arg.as_str()) => Ok(()),
                "stdout" => Err(format!("no {arg:?} in its output")),
                other => Err(format!("unknown check `{other}`")),
            };
            if let Err(why) = verdict {
                panic!("{why}\n{context}");
            }
        }
        eprintln!(
            "README.md:{}: ran, {} checks passed",
            block.line,
            block.checks.iter().flatten().count()
        );
    }
    drop(groups);
    daemon.stop();
}

/// A log written to a file is plain text (no colour codes), and outside systemd the daemon does
/// not claim to have notified it.
#[tokio::test]
async fn a_log_file_is_plain_text_and_systemd_is_named_only_under_systemd() {
    let profiles = tempfile::tempdir().expect("profiles");
    let dir = tempfile::tempdir().expect("log dir");
    let log = dir.path().join("shotfarm.log");
    let api = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_shotfarm"))
        .args(["serve", "--listen", &api, "--metrics-listen", &metrics])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("NOTIFY_SOCKET")
        .env("SHOTFARM_REDIS__URL", redis_url())
        .env("SHOTFARM_FARM__BROWSERS", "1")
        .env("SHOTFARM_CHROMIUM__PROFILE_DIR", profiles.path())
        .env("SHOTFARM_SERVER__SHUTDOWN_GRACE_MS", "2000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn shotfarm");
    let mut child = ChildGuard(child);
    wait_ready_at(&format!("http://{api}"), 1).await;
    let ready_line = |text: &str| {
        text.lines()
            .find(|l| l.contains("shotfarm::service_manager") && l.contains("ready"))
            .map(str::to_string)
    };
    let started = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = ready_line(&text) {
            break line;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no ready line in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // SAFETY: a signal to the child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file:\n{text}"
    );
    assert!(line.contains("INFO"), "{line}");
    assert!(!line.contains("systemd"), "no systemd here: {line}");
}
