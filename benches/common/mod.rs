//! What only the benches share: whether `cargo bench` runs this binary, and the landing page
//! fixture. Processes, Redis, ports and `/proc` scans are in the kit (`tests/kit`).

/// Until every browser of `daemon` can take work (listening is not enough); fails at once when
/// the daemon exits, and after 90 s.
pub async fn wait_browsers_ready(
    daemon: &mut testkit::process::ServeProcess,
    client: &reqwest::Client,
) -> anyhow::Result<()> {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = daemon.process.child.try_wait()? {
            anyhow::bail!("the daemon exited during start-up: {status}");
        }
        let ready = async {
            let body: serde_json::Value = client
                .get(format!("http://{}/readyz", daemon.metrics))
                .send()
                .await?
                .json()
                .await?;
            let total = body["browsers_total"].as_u64().unwrap_or(0);
            Ok::<_, anyhow::Error>(total > 0 && body["browsers_ready"].as_u64() == Some(total))
        }
        .await;
        if matches!(ready, Ok(true)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("the daemon's browsers were not all ready within 90 s (last: {ready:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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

/// A whole-number setting from the environment, or `default` when unset.
pub fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}
