//! Chaos: load while Chromium, the daemon and Redis fail; the ledger must stay exact.
//!
//! One test, bounded in time and on loopback only. A private redis-server (append-only, fsync
//! always) and the real daemon binary (its own profile directory, short holds) serve several
//! accounts with a known number of credits, each driven by a few clients. Every capture carries
//! a unique `Idempotency-Key`; a client retries the same key after a lost connection, a 5xx, a
//! 409 or a 429, so that a charge whose response was lost is still delivered as a replay.
//! Meanwhile a schedule SIGKILLs Chromium browsers and renderers, SIGKILLs and restarts the
//! daemon, and kills and restarts Redis, while an auditor checks the ledger invariants of every
//! account on atomic snapshots.
//!
//! Afterwards, for every account: the invariants hold, no hold is open (none past its expiry,
//! the sweep indexes are empty), no `Idempotency-Key` is stuck in flight, `granted` is what was
//! granted, and every charge is one of our keys that delivered an image (each `usage`
//! transaction is the hold recorded by exactly one key whose image we received). An image
//! delivered without a charge is only accepted where the daemon logged that the commit of that
//! very request could not land (the documented "error in the customer's favour"). Once the
//! daemon is stopped, no process remains under its profile directory.
//!
//! Paid orders arrive throughout as Polar's signed `order.paid` webhooks (some of them again,
//! as Polar retries: the same webhook id re-signed, or a new one), each sent until a daemon
//! answers 200; at the end every order is granted exactly once. After every fault the ledger
//! of every account is audited (a fault window ends with that audit).
//!
//! Two modes. By default (`make test`) a short fixed plan: 13 faults (two of them stalls of Redis
//! with `CLIENT PAUSE … ALL`) over 40 s against one daemon. With `CHAOS_FAULTS=<n>` (`make
//! chaos`: 1,000) a schedule of `n` faults generated from the seed (kinds, targets, lengths and
//! gaps), mostly cheap ones (renderer and browser kills, Redis stalls) and some expensive ones
//! (daemon SIGKILL and restart, a Redis node killed and restarted, the primary SIGKILLed, failed
//! over by the Sentinels and restarted as a replica), against two daemons on a primary with two
//! replicas and three Sentinels (`ledger.replica_acks = 1`; `CHAOS_SENTINEL=0`: one Redis, no
//! failovers); the load lasts as long as the schedule.
//!
//! `CHAOS_SEED=<n>` replays a run's choices (schedule, pages, targets, jitter, orders); the
//! daemon logs of a failing run (of every long run, and of every run with `CHAOS_KEEP_LOGS=1`)
//! are kept with the report (`report.txt`), in the directory the report names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use shotfarm::ledger::keys::{self, AccountKeys};
use shotfarm::ledger::TxKind;

use crate::payments::{self, paid, polar_signer, send_webhook, OrderSpec};
use crate::redis_server::{start_redis, RedisServer};
use crate::support::{
    browser_pids, enc, eventually, page, processes_under, provision_on, spawn_binary_with,
    ChildGuard, Rng,
};
use testkit::sentinel::{SentinelGroup, MASTER};

/// How long clients start new keys.
const LOAD: Duration = Duration::from_secs(40);
/// How long a client keeps retrying one key before it gives up on it (reported as a problem).
const KEY_PATIENCE: Duration = Duration::from_secs(45);
/// The capture timeout (the daemon's default; requests do not set it).
const CAPTURE_TIMEOUT_MS: u64 = 8_000;
const HOLD_GRACE_MS: u64 = 1_000;
const SWEEP_INTERVAL_MS: u64 = 200;
/// Credits of each account: the first one runs dry under load (402s) and is never paid for,
/// the others do not run dry (and orders add to them).
const CREDITS: [i64; 4] = [12, 300, 300, 300];
/// The same for the long mode's much longer load.
const LONG_CREDITS: [i64; 4] = [12, 3_000, 3_000, 3_000];
const CLIENTS_PER_ACCOUNT: usize = 3;
const BROWSERS: usize = 2;
/// Share of attempts whose client hangs up after 0.3–1.5 s.
const IMPATIENT_PERCENT: u64 = 12;
/// How long Redis stays down when the short plan restarts it.
const REDIS_OUTAGE_MS: u64 = 1_500;
/// How long the short plan's stalls last (longer than the daemons' 500 ms Redis timeout).
const STALL_MS: u64 = 1_200;

/// The short plan: when (from the start of the load) each fault is injected; each gets up to
/// 800 ms of seeded jitter.
const PLAN: &[(u64, Fault)] = &[
    (3_000, Fault::KillBrowser),
    (6_000, Fault::KillRenderer),
    (9_000, Fault::KillBrowser),
    (12_000, Fault::KillDaemon),
    (17_000, Fault::StallRedis),
    (19_000, Fault::KillBrowser),
    (22_000, Fault::RestartRedis),
    (26_000, Fault::KillBrowser),
    (26_100, Fault::KillBrowser),
    (28_500, Fault::KillRenderer),
    (30_000, Fault::KillDaemon),
    (33_000, Fault::StallRedis),
    (35_000, Fault::RestartRedis),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillBrowser,
    KillRenderer,
    StallRedis,
    KillDaemon,
    RestartRedis,
    FailoverRedis,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::KillBrowser,
        Fault::KillRenderer,
        Fault::StallRedis,
        Fault::KillDaemon,
        Fault::RestartRedis,
        Fault::FailoverRedis,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillBrowser => "SIGKILL a Chromium browser",
            Fault::KillRenderer => "SIGKILL a Chromium renderer",
            Fault::StallRedis => "stall Redis (CLIENT PAUSE ALL)",
            Fault::KillDaemon => "SIGKILL a daemon and restart it",
            Fault::RestartRedis => "kill a Redis node (a replica under Sentinels) and restart it",
            Fault::FailoverRedis => {
                "SIGKILL the Redis primary (Sentinel promotes a replica), restart it as a replica"
            }
        }
    }
}

/// When a step's fault is injected.
#[derive(Debug, Clone, Copy)]
enum When {
    /// At this time from the start of the load (the short plan).
    At(Duration),
    /// This long after the previous step's window was audited (the generated schedule).
    After(Duration),
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy)]
struct Step {
    when: When,
    fault: Fault,
    /// Chooses the daemon and the victim process.
    pick: u64,
    /// A stall's or a Redis outage's length.
    length_ms: u64,
    /// How long the fault's window lasts after the fault, before its audit.
    window_ms: u64,
}

/// The short mode's plan, with seeded jitter.
fn short_plan(rng: &mut Rng) -> Vec<Step> {
    PLAN.iter()
        .map(|&(at_ms, fault)| Step {
            when: When::At(Duration::from_millis(at_ms + rng.below(800) as u64)),
            fault,
            pick: rng.next(),
            length_ms: match fault {
                Fault::StallRedis => STALL_MS,
                _ => REDIS_OUTAGE_MS,
            },
            window_ms: 0,
        })
        .collect()
}

/// `n` faults generated from the seed: many cheap ones (renderer and browser kills, stalls of
/// 0.1–1 s, 0.1–0.6 s under Sentinels, whose down-after time is 1 s) with gaps of 0.1–0.5 s
/// (0.05–0.3 s under Sentinels),
/// fewer expensive ones (a daemon SIGKILLed and restarted, a Redis node down 0.2–1.5 s and
/// restarted, and with Sentinels the primary killed, failed over and restarted as a replica
/// 0.5–2 s later) with gaps of 0.5–1.5 s after their recovery.
fn generated_schedule(rng: &mut Rng, n: usize, sentinel: bool) -> Vec<Step> {
    (0..n)
        .map(|_| {
            let roll = rng.below(100);
            let fault = if sentinel {
                // A Redis step waits for the replicas and Sentinels to be in step again: the
                // Redis faults are rarer here, so the run stays about as long.
                match roll {
                    0..=35 => Fault::KillRenderer,
                    36..=60 => Fault::KillBrowser,
                    61..=89 => Fault::StallRedis,
                    90..=94 => Fault::KillDaemon,
                    95..=96 => Fault::RestartRedis,
                    _ => Fault::FailoverRedis,
                }
            } else {
                match roll {
                    0..=33 => Fault::KillRenderer,
                    34..=57 => Fault::KillBrowser,
                    58..=83 => Fault::StallRedis,
                    84..=91 => Fault::KillDaemon,
                    _ => Fault::RestartRedis,
                }
            };
            let length_ms = match fault {
                Fault::StallRedis if sentinel => rng.range(100, 600) as u64,
                Fault::StallRedis => rng.range(100, 1_000) as u64,
                Fault::RestartRedis => rng.range(200, 1_500) as u64,
                Fault::FailoverRedis => rng.range(500, 2_000) as u64,
                _ => 0,
            };
            let window_ms = match fault {
                Fault::KillDaemon | Fault::RestartRedis | Fault::FailoverRedis => {
                    rng.range(500, 1_500)
                }
                _ if sentinel => rng.range(50, 300),
                _ => rng.range(100, 500),
            } as u64;
            Step {
                when: When::After(Duration::ZERO),
                fault,
                pick: rng.next(),
                length_ms,
                window_ms,
            }
        })
        .collect()
}

/// The run's shape: `make test`'s short plan or `make chaos`'s long schedule.
struct Mode {
    long: bool,
    /// A primary, two replicas and three Sentinels (else one Redis).
    sentinel: bool,
    daemons: usize,
    credits: Vec<i64>,
    /// The load lasts at least this long, and until the schedule is done.
    min_load: Duration,
    /// Pause between two paid orders (ms, low and high).
    order_every_ms: (i64, i64),
}

impl Mode {
    fn from_env() -> Mode {
        let faults = std::env::var("CHAOS_FAULTS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n > 0);
        match faults {
            Some(_) => Mode {
                long: true,
                sentinel: std::env::var("CHAOS_SENTINEL").as_deref() != Ok("0"),
                daemons: 2,
                credits: LONG_CREDITS.to_vec(),
                min_load: Duration::ZERO,
                order_every_ms: (800, 3_000),
            },
            None => Mode {
                long: false,
                sentinel: false,
                daemons: 1,
                credits: CREDITS.to_vec(),
                min_load: LOAD,
                order_every_ms: (2_000, 5_000),
            },
        }
    }

    fn schedule(&self, seed: u64) -> Vec<Step> {
        let mut rng = Rng(seed);
        match std::env::var("CHAOS_FAULTS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        {
            Some(n) if self.long => generated_schedule(&mut rng, n, self.sentinel),
            _ => short_plan(&mut rng),
        }
    }

    /// How many of each kind must have been injected.
    fn least(&self, fault: Fault, scheduled: usize) -> usize {
        if fault == Fault::FailoverRedis && !self.sentinel {
            0
        } else if self.long {
            (scheduled / 100).max(1)
        } else {
            1
        }
    }
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The plain fixture page, 200×150.
    Plain,
    /// A page that arrives after 300 ms, 160×120.
    Slow,
    /// A script that throws: 400 `script_error` after the capture started (never charged).
    Throws,
}

impl Kind {
    fn pick(rng: &mut Rng) -> Kind {
        match rng.below(100) {
            0..=64 => Kind::Plain,
            65..=84 => Kind::Slow,
            _ => Kind::Throws,
        }
    }

    fn query(self) -> String {
        match self {
            Kind::Plain => format!("url={}&width=200&height=150", enc(&page("/plain"))),
            Kind::Slow => format!("url={}&width=160&height=120", enc(&page("/slow/300"))),
            Kind::Throws => format!(
                "url={}&width=120&height=90&js={}",
                enc(&page("/plain")),
                enc("throw new Error('chaos')")
            ),
        }
    }

    /// The image size a delivered capture must have.
    fn size(self) -> Option<(u32, u32)> {
        match self {
            Kind::Plain => Some((200, 150)),
            Kind::Slow => Some((160, 120)),
            Kind::Throws => None,
        }
    }
}

/// How one key ended.
#[derive(Debug, Clone)]
enum Settled {
    /// A valid PNG arrived; `fresh` names the request that captured it (None: a replay).
    Delivered { fresh: Option<String> },
    /// A definitive refusal: 402, or the thrown script's 400.
    Refused { status: u16 },
    /// An answer the test does not expect (a problem).
    Unexpected(String),
    /// Still no definitive answer after `KEY_PATIENCE` (a problem).
    GaveUp(String),
}

#[derive(Debug, Clone)]
struct KeyLog {
    account: usize,
    key: String,
    kind: Kind,
    attempts: u32,
    settled: Settled,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    responses: BTreeMap<String, u64>,
}

/// What clients and the fault injector share.
struct Ctx {
    /// The base URLs of the daemon incarnations currently running (one per daemon slot).
    bases: RwLock<Vec<String>>,
    /// Set when the load ends: clients and the payer start nothing new.
    load_over: AtomicBool,
    stats: Mutex<Stats>,
}

impl Ctx {
    /// One of the daemons, chosen by `rng`.
    fn base(&self, rng: &mut Rng) -> String {
        let bases = self.bases.read().expect("base lock");
        bases[rng.below(bases.len())].clone()
    }

    fn over(&self) -> bool {
        self.load_over.load(Ordering::Relaxed)
    }

    fn count(&self, what: String) {
        let mut stats = self.stats.lock().expect("stats lock");
        stats.requests += 1;
        *stats.responses.entry(what).or_default() += 1;
    }
}

/// The error code of a JSON error body (the 402 body has it at the top level).
fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["error"]["code"]
        .as_str()
        .or_else(|| v["code"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// Whether `body` is a PNG of `size`.
fn check_png(body: &[u8], size: (u32, u32)) -> Result<(), String> {
    if !body.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(format!("not PNG bytes ({} bytes)", body.len()));
    }
    let img = image::load_from_memory_with_format(body, image::ImageFormat::Png)
        .map_err(|e| format!("undecodable PNG: {e}"))?;
    if (img.width(), img.height()) != size {
        return Err(format!(
            "a {}x{} image, {}x{} expected",
            img.width(),
            img.height(),
            size.0,
            size.1
        ));
    }
    Ok(())
}

/// Sends one key until it has a definitive answer, retrying the same key (and options) after
/// a lost connection, a 5xx, a 409 or a 429.
async fn settle(
    ctx: &Ctx,
    http: &reqwest::Client,
    rng: &mut Rng,
    account: usize,
    key: String,
    kind: Kind,
) -> KeyLog {
    let started = Instant::now();
    let query = kind.query();
    let mut attempts = 0;
    let settled = loop {
        attempts += 1;
        let request_id = format!("{key}-r{attempts:03}");
        let url = format!("{}/api/v1/screenshot?{query}", ctx.base(rng));
        let mut request = http
            .get(url)
            .header("idempotency-key", &key)
            .header("x-request-id", &request_id);
        // Some attempts hang up early: a response lost on the way, which the settlement must
        // survive (the retry finds the key in flight, then replays it).
        let impatient = rng.percent(IMPATIENT_PERCENT);
        if impatient {
            request = request.timeout(Duration::from_millis(300 + rng.below(1_200) as u64));
        }
        let sent = request.send().await;
        let mut retry_after = None;
        let last = match sent {
            Err(e) if impatient && e.is_timeout() => {
                ctx.count("client hung up".into());
                format!("hung up: {e}")
            }
            Err(e) => {
                ctx.count("transport error".into());
                format!("transport error: {e}")
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let replayed = r
                    .headers()
                    .get("idempotent-replayed")
                    .is_some_and(|v| v == "true");
                let png = r
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v == "image/png");
                retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                match (status, r.bytes().await) {
                    (_, Err(e)) if impatient && e.is_timeout() => {
                        ctx.count("client hung up".into());
                        format!("{status}, then hung up: {e}")
                    }
                    (_, Err(e)) => {
                        ctx.count("transport error (body)".into());
                        format!("{status}, then the body was lost: {e}")
                    }
                    (200, Ok(body)) => {
                        ctx.count(if replayed { "200 replayed" } else { "200" }.into());
                        let checked = match kind.size() {
                            Some(size) if png => check_png(&body, size),
                            Some(_) => Err("not image/png".to_string()),
                            None => Err("an image for a script that throws".to_string()),
                        };
                        break match checked {
                            Ok(()) => Settled::Delivered {
                                fresh: (!replayed).then_some(request_id),
                            },
                            Err(why) => Settled::Unexpected(format!("{request_id}: 200 but {why}")),
                        };
                    }
                    (_, Ok(body)) => {
                        let text = String::from_utf8_lossy(&body).to_string();
                        let code = error_code(&text);
                        ctx.count(format!("{status} {code}"));
                        match (status, code.as_str()) {
                            (402, "insufficient_credits") => break Settled::Refused { status },
                            (400, "script_error") if kind == Kind::Throws => {
                                break Settled::Refused { status }
                            }
                            // A renderer the schedule SIGKILLs mid-capture is answered as the
                            // daemon answers any renderer death: 422 `page_crashed`, free and not
                            // retried on its side (it cannot tell a kill from the page's own
                            // crash). The pages here are benign, so the client tries again.
                            (409, "idempotency_in_flight")
                            | (422, "page_crashed")
                            | (429, _)
                            | (500..=599, _) => {
                                format!("{status} {code}")
                            }
                            _ => {
                                break Settled::Unexpected(format!("{request_id}: {status} {text}"))
                            }
                        }
                    }
                }
            }
        };
        if started.elapsed() > KEY_PATIENCE {
            break Settled::GaveUp(format!("{attempts} attempts, last: {last}"));
        }
        let pause = match retry_after {
            Some(secs) => Duration::from_secs(secs.min(1)),
            None => Duration::from_millis(150 + rng.below(450) as u64),
        };
        tokio::time::sleep(pause).await;
    };
    KeyLog {
        account,
        key,
        kind,
        attempts,
        settled,
    }
}

/// One client of one account: new keys until the load ends or the account runs dry.
async fn client(
    ctx: Arc<Ctx>,
    account: usize,
    api_key: String,
    no: usize,
    seed: u64,
) -> Vec<KeyLog> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-api-key",
        reqwest::header::HeaderValue::from_str(&api_key).expect("key header"),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut n = 0;
    while !ctx.over() {
        let kind = Kind::pick(&mut rng);
        let key = format!("chaos-a{account}-c{no}-k{n}");
        let log = settle(&ctx, &http, &mut rng, account, key, kind).await;
        let dry = matches!(log.settled, Settled::Refused { status: 402 });
        out.push(log);
        if dry {
            break;
        }
        n += 1;
    }
    out
}

/// One paid order, as Polar delivers it.
struct PaidOrder {
    id: String,
    account: usize,
    credits: i64,
    auto_topup: bool,
    /// The event as first signed: Polar's retries resend these bytes.
    body: String,
    /// The webhook id of its first delivery.
    webhook_id: String,
    /// Deliveries answered 200 (the first and every repeat).
    acknowledged: u32,
}

/// Delivers `order.paid` webhooks to the daemons until the load ends: new orders of the funded
/// accounts (never the first, which must run dry), and again orders delivered before, as
/// Polar retries (the same webhook id signed anew, or a new id). Each delivery is sent until a
/// daemon answers 200, as Polar does.
async fn payer(
    ctx: Arc<Ctx>,
    accounts: Vec<(usize, String)>,
    seed: u64,
    every_ms: (i64, i64),
) -> (Vec<PaidOrder>, Vec<String>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let signer = polar_signer();
    let mut rng = Rng(seed);
    let mut orders: Vec<PaidOrder> = Vec::new();
    let mut problems = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(
            rng.range(every_ms.0, every_ms.1) as u64
        ))
        .await;
        if ctx.over() {
            break;
        }
        let repeat = !orders.is_empty() && rng.percent(30);
        let (index, delivery) = if repeat {
            let i = rng.below(orders.len());
            let o = &orders[i];
            let delivery = if rng.percent(50) {
                signer.deliver_as(&o.webhook_id, payments::now_secs(), &o.body)
            } else {
                signer.deliver(&o.body)
            };
            (i, delivery)
        } else {
            let (account, account_id) = &accounts[rng.below(accounts.len())];
            let pack_id = if rng.percent(75) {
                "pack_starter"
            } else {
                "pack_pro"
            };
            let mut spec = OrderSpec::new(account_id, pack_id);
            spec.auto_topup = rng.percent(25);
            let body = paid(&spec);
            let delivery = signer.deliver(&body);
            orders.push(PaidOrder {
                id: spec.id.clone(),
                account: *account,
                credits: payments::pack(pack_id).2,
                auto_topup: spec.auto_topup,
                body,
                webhook_id: delivery.id.clone(),
                acknowledged: 0,
            });
            (orders.len() - 1, delivery)
        };
        let started = Instant::now();
        loop {
            let base = ctx.base(&mut rng);
            let last = match send_webhook(&http, &base, &delivery, None).await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    let code = error_code(&text);
                    match status {
                        200 => {
                            ctx.count("webhook 200".into());
                            orders[index].acknowledged += 1;
                            break;
                        }
                        500..=599 => {
                            ctx.count(format!("webhook {status} {code}"));
                            format!("{status} {text}")
                        }
                        _ => {
                            ctx.count(format!("webhook {status} {code}"));
                            problems.push(format!(
                                "order {}: webhook answered {status} {text}",
                                orders[index].id
                            ));
                            break;
                        }
                    }
                }
                Err(e) => {
                    ctx.count("webhook transport error".into());
                    format!("transport error: {e}")
                }
            };
            if started.elapsed() > KEY_PATIENCE {
                problems.push(format!(
                    "order {}: no 200 in {KEY_PATIENCE:?}, last: {last}",
                    orders[index].id
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.range(200, 800) as u64)).await;
        }
    }
    (orders, problems)
}

/// What the fault injector did and saw.
#[derive(Default)]
struct FaultLog {
    injected: BTreeMap<Fault, u32>,
    skipped: Vec<String>,
    problems: Vec<String>,
    daemon_logs: Vec<PathBuf>,
    /// Account audits made at the end of fault windows.
    window_audits: u64,
    /// Fault windows that ended with every account audited.
    windows_audited: u64,
}

/// The environment of every daemon incarnation: short holds, fast Redis timeouts, and the
/// webhooks of Polar's stand-in (its secret, the packs' products).
fn daemon_env() -> Vec<(String, String)> {
    let mut env = vec![
        ("SHOTFARM_FARM__BROWSERS", BROWSERS.to_string()),
        ("SHOTFARM_LEDGER__HOLD_GRACE_MS", HOLD_GRACE_MS.to_string()),
        (
            "SHOTFARM_LEDGER__SWEEP_INTERVAL_MS",
            SWEEP_INTERVAL_MS.to_string(),
        ),
        ("SHOTFARM_REDIS__RESPONSE_TIMEOUT_MS", "500".to_string()),
        ("SHOTFARM_REDIS__CONNECT_TIMEOUT_MS", "500".to_string()),
        (
            "SHOTFARM_CAPTURE__DEFAULT_TIMEOUT_MS",
            CAPTURE_TIMEOUT_MS.to_string(),
        ),
        ("SHOTFARM_FARM__RESTART_BACKOFF_MAX_MS", "2000".to_string()),
        (
            "SHOTFARM_PAYMENTS__WEBHOOK_SECRET",
            payments::POLAR_SECRET.to_string(),
        ),
        (
            "SHOTFARM_PAYMENTS__WEBHOOK_SECRET_FORMAT",
            "polar".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<Vec<_>>();
    for (pack, product) in payments::products() {
        env.push((
            format!("SHOTFARM_PAYMENTS__PRODUCTS__{}", pack.to_uppercase()),
            product,
        ));
    }
    env
}

/// Starts an incarnation of daemon `slot`, logging to `logs/daemon<slot>-<n>.log` (not waiting
/// until it is ready).
fn start_daemon(
    slot: usize,
    profiles: &Path,
    redis: &DaemonRedis,
    logs: &Path,
    fault_log: &mut FaultLog,
) -> (ChildGuard, String) {
    let log = logs.join(format!(
        "daemon{slot}-{}.log",
        fault_log.daemon_logs.len() + 1
    ));
    let env = daemon_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args: Vec<&str> = redis.args.iter().map(String::as_str).collect();
    let (child, base) = spawn_binary_with(profiles, &redis.url, &env, Some(&log), &args);
    fault_log.daemon_logs.push(log);
    (child, base)
}

/// Whether the daemon at `base` reports `n` ready browsers within `limit`.
async fn ready_within(base: &str, n: u64, limit: Duration) -> bool {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["browsers_ready"].as_u64() == Some(n) {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn sigkill(pid: u32) -> bool {
    // SAFETY: kill(2) on a process found under this test's own profile directory.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
}

/// Chromium renderers under `dir`.
fn renderer_pids(dir: &Path) -> Vec<u32> {
    processes_under(dir)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("--type=renderer"))
        .map(|(pid, _)| pid)
        .collect()
}

/// The Redis the daemons use.
enum Store {
    /// One redis-server.
    Single(RedisServer),
    /// A primary, replicas and Sentinels.
    Sentinel(SentinelGroup),
}

impl Store {
    /// The primary's URL as the Sentinels name it now.
    fn primary_url(&self) -> anyhow::Result<String> {
        Ok(match self {
            Store::Single(r) => r.url.clone(),
            Store::Sentinel(g) => format!("redis://127.0.0.1:{}/0", g.primary_port()?),
        })
    }
}

/// How a daemon finds its Redis: `redis.url`, and the arguments that name the Sentinels.
struct DaemonRedis {
    url: String,
    args: Vec<String>,
}

/// The daemons and the Redis the faults are injected into.
struct Injector {
    ctx: Arc<Ctx>,
    /// One running incarnation per daemon slot.
    daemons: Vec<ChildGuard>,
    /// Each slot's profile directory (all its incarnations share it).
    profiles: Vec<PathBuf>,
    /// Taken while a blocking step (kill, restart, failover) holds it.
    redis: Option<Store>,
    /// The primary's URL (the harness's audits read from it), as of the last fault.
    primary: Arc<RwLock<String>>,
    daemon_redis: DaemonRedis,
    logs: PathBuf,
    accounts: Vec<String>,
    log: FaultLog,
}

impl Injector {
    fn redis_url(&self) -> String {
        self.primary.read().expect("primary lock").clone()
    }

    /// Runs `step` on the Redis store on a blocking thread (the kit's calls wait), then learns
    /// where the primary is.
    async fn with_store(
        &mut self,
        step: impl FnOnce(&mut Store) -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut store = self.redis.take().expect("Redis is held");
        let (store, done) = tokio::task::spawn_blocking(move || {
            let done = step(&mut store);
            (store, done)
        })
        .await
        .expect("a Redis step");
        let primary = store.primary_url();
        self.redis = Some(store);
        *self.primary.write().expect("primary lock") = primary?;
        done
    }

    /// Runs the schedule, auditing every account at the end of each fault's window.
    async fn run(mut self, start: Instant, schedule: Vec<Step>) -> Injector {
        for (n, step) in schedule.iter().enumerate() {
            match step.when {
                When::At(at) => tokio::time::sleep_until((start + at).into()).await,
                When::After(gap) => tokio::time::sleep(gap).await,
            }
            // A fault that found nothing to hit (no renderer at that moment, Redis not answering
            // the pause) is tried again a few times before it counts as skipped.
            for attempt in 1..=5 {
                if self.inject(step).await || attempt == 5 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep(Duration::from_millis(step.window_ms)).await;
            self.audit_window(n + 1, step.fault).await;
            if (n + 1) % 100 == 0 {
                eprintln!(
                    "chaos: {} of {} faults done after {:.1?}; {} problem(s) so far{}",
                    n + 1,
                    schedule.len(),
                    start.elapsed(),
                    self.log.problems.len(),
                    self.log
                        .problems
                        .last()
                        .map(|p| format!(", the last: {p}"))
                        .unwrap_or_default()
                );
            }
        }
        self
    }

    /// Injects one fault; false when it found nothing to hit.
    async fn inject(&mut self, step: &Step) -> bool {
        let fault = step.fault;
        let slot = (step.pick % self.daemons.len() as u64) as usize;
        let mut injected = true;
        match fault {
            Fault::KillBrowser | Fault::KillRenderer => {
                let find = |dir: &Path| match fault {
                    Fault::KillBrowser => browser_pids(dir),
                    _ => renderer_pids(dir),
                };
                let mut victims = Vec::new();
                let dir = self.profiles[slot].clone();
                eventually(Duration::from_secs(10), || {
                    victims = find(&dir);
                    !victims.is_empty()
                })
                .await;
                if victims.is_empty() {
                    self.log
                        .skipped
                        .push(format!("{} of daemon {slot}: none found", fault.name()));
                    return false;
                }
                let pid = victims[((step.pick >> 8) % victims.len() as u64) as usize];
                if !sigkill(pid) {
                    self.log
                        .skipped
                        .push(format!("{}: pid {pid} already gone", fault.name()));
                    injected = false;
                }
            }
            Fault::KillDaemon => {
                let daemon = &mut self.daemons[slot];
                if let Ok(Some(status)) = daemon.try_wait() {
                    self.log
                        .problems
                        .push(format!("daemon {slot} exited on its own: {status}"));
                }
                let pid = daemon.id();
                daemon.kill().expect("SIGKILL the daemon");
                let _ = daemon.wait();
                let dir = self.profiles[slot].clone();
                let gone =
                    eventually(Duration::from_secs(10), || processes_under(&dir).is_empty()).await;
                if !gone {
                    self.log.problems.push(format!(
                        "Chromium outlived the SIGKILLed daemon {slot} (pid {pid}): {:?}",
                        processes_under(&dir)
                    ));
                }
                let (next, base) =
                    start_daemon(slot, &dir, &self.daemon_redis, &self.logs, &mut self.log);
                self.daemons[slot] = next;
                // Clients move to it at once (refused or 503 until it is ready).
                self.ctx.bases.write().expect("base lock")[slot] = base.clone();
                if !ready_within(&base, BROWSERS as u64, Duration::from_secs(60)).await {
                    self.log.problems.push(format!(
                        "daemon {slot} restarted at {base} had no {BROWSERS} ready browsers \
                         within 60 s"
                    ));
                }
            }
            Fault::RestartRedis => {
                let (pick, length_ms) = (step.pick >> 16, step.length_ms);
                let done = self
                    .with_store(move |store| match store {
                        Store::Single(redis) => {
                            redis.kill();
                            std::thread::sleep(Duration::from_millis(length_ms));
                            *redis = redis.restart()?;
                            Ok(())
                        }
                        Store::Sentinel(group) => {
                            // A replica: the primary's death is the failover's fault. (A
                            // primary restarted within the down-after time comes back with the
                            // command line it was first started with, which for a promoted
                            // replica says `--replicaof` its first primary: no primary at all,
                            // and the Sentinels, whose replicas then lost their link too long
                            // ago, never promote one. Seen with the seed 1796416972962883210.)
                            let primary = group.primary_port()?;
                            let replicas: Vec<u16> = group
                                .servers
                                .iter()
                                .map(|s| s.port)
                                .filter(|&p| p != primary)
                                .collect();
                            let port = replicas[(pick % replicas.len() as u64) as usize];
                            group.server(port)?.kill();
                            std::thread::sleep(Duration::from_millis(length_ms));
                            group.restart(port)
                        }
                    })
                    .await;
                if let Err(e) = done {
                    self.log.problems.push(format!("{}: {e:#}", fault.name()));
                }
            }
            Fault::FailoverRedis => {
                let length_ms = step.length_ms;
                let done = self
                    .with_store(move |store| {
                        let Store::Sentinel(group) = store else {
                            anyhow::bail!("a failover needs the Sentinel topology");
                        };
                        let old = group.primary_port()?;
                        group.server(old)?.kill();
                        let promoted = group.wait_failover(old, Duration::from_secs(30));
                        // The daemons run on the new primary while the old one is down.
                        std::thread::sleep(Duration::from_millis(length_ms));
                        // Back in any case (as a replica), so one failed failover is reported
                        // without leaving the group short of a node.
                        let restarted = group.restart(old);
                        promoted?;
                        restarted
                    })
                    .await;
                if let Err(e) = done {
                    self.log.problems.push(format!("{}: {e:#}", fault.name()));
                }
            }
            Fault::StallRedis => {
                let url = self.redis_url();
                let pause = async {
                    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                    let mut conn = client
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(|e| e.to_string())?;
                    redis::cmd("CLIENT")
                        .arg("PAUSE")
                        .arg(step.length_ms)
                        .arg("ALL")
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(|e| e.to_string())
                };
                match tokio::time::timeout(Duration::from_secs(2), pause).await {
                    Ok(Ok(())) => {
                        tokio::time::sleep(Duration::from_millis(step.length_ms)).await;
                    }
                    Ok(Err(e)) => {
                        self.log.skipped.push(format!("{}: {e}", fault.name()));
                        injected = false;
                    }
                    Err(_) => {
                        self.log
                            .skipped
                            .push(format!("{}: Redis did not answer", fault.name()));
                        injected = false;
                    }
                }
            }
        }
        if injected {
            *self.log.injected.entry(fault).or_default() += 1;
        }
        injected
    }

    /// Audits every account on atomic snapshots, waiting (up to 20 s) for Redis to answer.
    async fn audit_window(&mut self, window: usize, fault: Fault) {
        let url = self.redis_url();
        let limit = Instant::now() + Duration::from_secs(20);
        let mut pending: Vec<String> = self.accounts.clone();
        while !pending.is_empty() {
            let mut unread = Vec::new();
            for account in pending {
                match try_snapshot(&url, &account).await {
                    Ok(Some(snapshot)) => {
                        self.log.window_audits += 1;
                        let broken = shotfarm::ledger::audit::violations(&snapshot);
                        if !broken.is_empty() {
                            self.log.problems.push(format!(
                                "after fault {window} ({}), {account}: {broken:?}",
                                fault.name()
                            ));
                        }
                    }
                    Ok(None) => self.log.problems.push(format!(
                        "after fault {window} ({}), account {account} is gone",
                        fault.name()
                    )),
                    Err(_) => unread.push(account),
                }
            }
            pending = unread;
            if pending.is_empty() {
                self.log.windows_audited += 1;
            } else if Instant::now() > limit {
                self.log.problems.push(format!(
                    "after fault {window} ({}), Redis did not answer for 20 s: {} account(s) \
                     not audited",
                    fault.name(),
                    pending.len()
                ));
                break;
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// An account's snapshot on `url` (`None`: no such account), or why it could not be read
/// (Redis down).
async fn try_snapshot(
    url: &str,
    account: &str,
) -> Result<Option<shotfarm::ledger::store::Snapshot>, String> {
    let read = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        shotfarm::ledger::store::snapshot(&mut conn, account)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Checks every account's invariants on atomic snapshots until `stop`.
async fn audit_during_load(
    primary: Arc<RwLock<String>>,
    accounts: Vec<String>,
    stop: Arc<AtomicBool>,
    audits: Arc<AtomicU64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for account in &accounts {
            let url = primary.read().expect("primary lock").clone();
            match try_snapshot(&url, account).await {
                Ok(Some(snapshot)) => {
                    audits.fetch_add(1, Ordering::Relaxed);
                    let broken = shotfarm::ledger::audit::violations(&snapshot);
                    if !broken.is_empty() {
                        problems.push(format!("during load, {account}: {broken:?}"));
                    }
                }
                Ok(None) => problems.push(format!("during load, account {account} is gone")),
                // Unreadable while Redis is down: the next round checks again.
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    problems
}

/// Lines of the daemon logs that mention `request_id` (ids are `<key>-rNNN`: none is a prefix
/// of another).
fn log_lines(logs: &[PathBuf], request_id: &str) -> Vec<String> {
    logs.iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| l.contains(request_id))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_keeps_every_ledger_exact_and_leaves_no_chromium() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let mode = Mode::from_env();
    let schedule = mode.schedule(seed);
    eprintln!(
        "chaos: seed {seed} (CHAOS_SEED={seed} replays its choices); {} mode, {} faults \
         scheduled, {} daemon(s)",
        if mode.long { "long" } else { "short" },
        schedule.len(),
        mode.daemons
    );
    let logs = tempfile::Builder::new()
        .prefix("chaos-")
        .tempdir()
        .expect("log dir")
        .keep();
    let profiles = tempfile::tempdir().expect("profile dir");
    let profile_dirs: Vec<PathBuf> = (0..mode.daemons)
        .map(|slot| profiles.path().join(format!("daemon{slot}")))
        .collect();
    for dir in &profile_dirs {
        std::fs::create_dir_all(dir).expect("profile dir");
    }

    // A Redis of its own: restarting the shared one would break the tests running beside us.
    // The long mode's is a primary with two replicas and three Sentinels; the daemons find the
    // primary through the Sentinels, and wait for one replica to hold every credit mutation
    // (`ledger.replica_acks = 1`: nothing answered is lost with a primary).
    let (store, daemon_redis) = if mode.sentinel {
        let group = tokio::task::spawn_blocking(|| SentinelGroup::start(2, 3))
            .await
            .expect("join")
            .expect("a primary, two replicas and three Sentinels");
        let config = logs.join("sentinel.toml");
        let sentinels: Vec<String> = group
            .sentinel_urls()
            .iter()
            .map(|u| format!("{u:?}"))
            .collect();
        std::fs::write(
            &config,
            format!(
                "[redis]\nsentinels = [{}]\nsentinel_master = {MASTER:?}\n\n\
                 [ledger]\nreplica_acks = 1\nreplica_ack_timeout_ms = 300\n",
                sentinels.join(", ")
            ),
        )
        .expect("write the daemons' Sentinel config");
        let url = group.servers[0].url.clone();
        (
            Store::Sentinel(group),
            DaemonRedis {
                url,
                args: vec!["--config".into(), config.display().to_string()],
            },
        )
    } else {
        let redis = tokio::task::spawn_blocking(start_redis)
            .await
            .expect("start Redis");
        let url = redis.url.clone();
        (Store::Single(redis), DaemonRedis { url, args: vec![] })
    };
    let redis_url = store.primary_url().expect("the primary");
    let primary = Arc::new(RwLock::new(redis_url.clone()));
    let funded = {
        let url = redis_url.clone();
        let credits = mode.credits.clone();
        tokio::task::spawn_blocking(move || {
            credits
                .iter()
                .map(|&credits| provision_on(&url, credits))
                .collect::<Vec<_>>()
        })
        .await
        .expect("provision accounts")
    };
    let mut fault_log = FaultLog::default();
    let mut daemons = Vec::new();
    let mut bases = Vec::new();
    for (slot, dir) in profile_dirs.iter().enumerate() {
        let (daemon, base) = start_daemon(slot, dir, &daemon_redis, &logs, &mut fault_log);
        daemons.push(daemon);
        bases.push(base);
    }
    for base in &bases {
        assert!(
            ready_within(base, BROWSERS as u64, Duration::from_secs(60)).await,
            "the daemon at {base} never had {BROWSERS} ready browsers (logs in {})",
            logs.display()
        );
    }

    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        bases: RwLock::new(bases),
        load_over: AtomicBool::new(false),
        stats: Mutex::new(Stats::default()),
    });
    let stop_audit = Arc::new(AtomicBool::new(false));
    let audits = Arc::new(AtomicU64::new(0));
    let auditor = tokio::spawn(audit_during_load(
        primary.clone(),
        funded.iter().map(|f| f.account.clone()).collect(),
        stop_audit.clone(),
        audits.clone(),
    ));
    let mut clients = Vec::new();
    for (a, f) in funded.iter().enumerate() {
        for c in 0..CLIENTS_PER_ACCOUNT {
            let client_seed =
                seed ^ ((a * CLIENTS_PER_ACCOUNT + c + 1) as u64).wrapping_mul(0x9e37);
            clients.push(tokio::spawn(client(
                ctx.clone(),
                a,
                f.key.clone(),
                c,
                client_seed,
            )));
        }
    }
    // Orders for every account but the first (which must run dry).
    let payer = tokio::spawn(payer(
        ctx.clone(),
        funded
            .iter()
            .enumerate()
            .skip(1)
            .map(|(a, f)| (a, f.account.clone()))
            .collect(),
        seed ^ 0x0bad_cafe,
        mode.order_every_ms,
    ));
    let injector = Injector {
        ctx: ctx.clone(),
        daemons,
        profiles: profile_dirs.clone(),
        redis: Some(store),
        primary: primary.clone(),
        daemon_redis,
        logs: logs.clone(),
        accounts: funded.iter().map(|f| f.account.clone()).collect(),
        log: fault_log,
    };
    let scheduled = schedule.len();
    let faults = tokio::spawn(injector.run(start, schedule));

    let Injector {
        daemons,
        redis,
        log: fault_log,
        ..
    } = faults.await.expect("the fault schedule ran");
    let redis = redis.expect("Redis is held");
    // Where the primary is after the last fault.
    let redis_url = redis.primary_url().expect("the primary");
    tokio::time::sleep_until((start + mode.min_load).into()).await;
    ctx.load_over.store(true, Ordering::Relaxed);
    let mut keys: Vec<KeyLog> = Vec::new();
    for c in clients {
        keys.extend(c.await.expect("a client ran"));
    }
    let (orders, order_problems) = payer.await.expect("the payer ran");
    let load_time = start.elapsed();
    stop_audit.store(true, Ordering::Relaxed);
    let mut problems = auditor.await.expect("the auditor ran");
    problems.extend(fault_log.problems.iter().cloned());
    problems.extend(order_problems);

    // Holds of killed daemons and of commits that never landed come back through the sweeper
    // of the running daemons: after the longest hold (timeout + 0.5 s + grace) at the latest.
    let hold_life = Duration::from_millis(CAPTURE_TIMEOUT_MS + 500 + HOLD_GRACE_MS);
    let settle_by = Instant::now() + hold_life + Duration::from_secs(5);
    let mut snapshots = loop {
        let mut all = Vec::new();
        for f in &funded {
            match try_snapshot(&redis_url, &f.account).await {
                Ok(Some(s)) => all.push(s),
                Ok(None) => panic!("account {} is gone after the chaos", f.account),
                Err(e) => panic!("Redis is up after the chaos, yet {}: {e}", f.account),
            }
        }
        if all.iter().all(|s| s.holds.is_empty()) || Instant::now() > settle_by {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // No hold is open, so none is past its expiry, and no index entry is left behind.
    let client = redis::Client::open(redis_url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers after the chaos");
    let (now_s, _): (i64, i64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .expect("Redis TIME");
    for (f, s) in funded.iter().zip(&snapshots) {
        for h in &s.holds {
            problems.push(format!(
                "{}: hold {} still open, {} s past its expiry",
                f.account,
                h.id,
                now_s - h.expires_ms / 1000
            ));
        }
    }
    let due = shotfarm::ledger::store::due_holds(&mut conn, 1000)
        .await
        .expect("read the sweep indexes");
    if !due.is_empty() {
        problems.push(format!("holds due in the sweep indexes: {due:?}"));
    }
    let mut pipe = redis::pipe();
    for shard in 0..keys::SHARDS {
        pipe.cmd("ZCARD").arg(keys::sweep(shard));
    }
    let indexed: Vec<u64> = pipe
        .query_async(&mut conn)
        .await
        .expect("count the sweep indexes");
    let indexed: u64 = indexed.iter().sum();
    if indexed != 0 {
        problems.push(format!("{indexed} entries left in the sweep indexes"));
    }

    // Per account: the invariants, the balance, every paid order granted once, and every
    // charge matched to a delivered key.
    let mut final_audits = 0;
    let mut explained_free = Vec::new();
    let mut credits_checked = 0;
    let mut charged_total = 0;
    let mut delivered_total = 0;
    let mut orders_checked = 0;
    for (a, (f, s)) in funded.iter().zip(&mut snapshots).enumerate() {
        // Re-read after the wait, so the checks see the settled state.
        *s = try_snapshot(&redis_url, &f.account)
            .await
            .expect("Redis answers the final snapshot")
            .expect("the account still exists");
        final_audits += 1;
        let broken = shotfarm::ledger::audit::violations(s);
        if !broken.is_empty() {
            problems.push(format!("{}: invariants broken: {broken:?}", f.account));
        }
        let b = &s.balance;
        credits_checked += b.granted;
        let account_keys = AccountKeys::new(&f.account);

        // Paid orders: each one's reference applied, one grant each, of its pack's credits.
        let mine: Vec<&PaidOrder> = orders.iter().filter(|o| o.account == a).collect();
        let mut paid_credits = 0;
        let mut kinds = (0, 0);
        for o in &mine {
            orders_checked += 1;
            paid_credits += o.credits;
            if o.auto_topup {
                kinds.1 += 1;
            } else {
                kinds.0 += 1;
            }
            let applied: bool = redis::cmd("SISMEMBER")
                .arg(account_keys.refs())
                .arg(keys::order_reference(&o.id))
                .query_async(&mut conn)
                .await
                .expect("read the applied references");
            if !applied || o.acknowledged == 0 {
                problems.push(format!(
                    "{}: order {} (acknowledged {} time(s)) is not among the applied references",
                    f.account, o.id, o.acknowledged
                ));
            }
        }
        let grants = |kind: TxKind| -> (usize, i64) {
            let of = s.transactions.iter().filter(|t| t.kind == kind);
            (of.clone().count(), of.map(|t| t.amount).sum())
        };
        let (purchases, purchased) = grants(TxKind::Purchase);
        let (topups, topped_up) = grants(TxKind::AutoTopup);
        if (purchases, topups) != kinds || purchased + topped_up != paid_credits {
            problems.push(format!(
                "{}: {} purchase(s) and {} auto top-up(s) of {} credits in all, for {} and {} \
                 paid order(s) of {paid_credits} credits",
                f.account,
                purchases,
                topups,
                purchased + topped_up,
                kinds.0,
                kinds.1
            ));
        }
        if b.granted != mode.credits[a] + paid_credits {
            problems.push(format!(
                "{}: granted {} but {} + {paid_credits} (orders) were granted",
                f.account, b.granted, mode.credits[a]
            ));
        }
        if b.reserved != 0 || b.available + b.spent != b.granted {
            problems.push(format!(
                "{}: available {} + spent {} (reserved {}) != granted {}",
                f.account, b.available, b.spent, b.reserved, b.granted
            ));
        }
        let usage: HashSet<&str> = s
            .transactions
            .iter()
            .filter(|t| t.kind == TxKind::Usage)
            .map(|t| t.id.as_str())
            .collect();
        let mut charged_holds: HashMap<String, String> = HashMap::new();
        let mut delivered = 0;
        for k in keys.iter().filter(|k| k.account == a) {
            let idem = account_keys
                .idempotency(&shotfarm::accounts::secrets::sha256_hex(k.key.as_bytes()));
            let (state, hold): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&idem)
                .arg("state")
                .arg("hold")
                .query_async(&mut conn)
                .await
                .expect("read an idempotency record");
            let is_delivered = matches!(k.settled, Settled::Delivered { .. });
            delivered += usize::from(is_delivered);
            match state.as_deref() {
                None => {
                    if let Settled::Delivered { fresh } = &k.settled {
                        // An image without a charge: only where the commit could not land.
                        let Some(rid) = fresh else {
                            problems.push(format!(
                                "{}: a replay was delivered, yet the key has no record",
                                k.key
                            ));
                            continue;
                        };
                        let lines = log_lines(&fault_log.daemon_logs, rid);
                        let why = lines.iter().find(|l| {
                            l.contains("commit failed") || l.contains("commit did not apply")
                        });
                        match why {
                            Some(line) => explained_free.push(format!("{}: {line}", k.key)),
                            None => problems.push(format!(
                                "{}: image delivered by {rid:?} but never charged, and the daemon \
                                 logged no failed commit for it: {lines:?}",
                                k.key
                            )),
                        }
                    }
                }
                Some("done") | Some("done_large") => {
                    let hold = hold.unwrap_or_default();
                    if !is_delivered {
                        problems.push(format!(
                            "{}: charged (hold {hold}) but no image was delivered: {:?} after {} attempts",
                            k.key, k.settled, k.attempts
                        ));
                    }
                    if !usage.contains(hold.as_str()) {
                        problems.push(format!(
                            "{}: marked done with hold {hold}, which has no usage transaction",
                            k.key
                        ));
                    }
                    if let Some(other) = charged_holds.insert(hold.clone(), k.key.clone()) {
                        problems.push(format!("hold {hold} charged for {other} and {}", k.key));
                    }
                }
                Some(other) => problems.push(format!(
                    "{}: Idempotency-Key left {other:?} after every hold settled ({:?})",
                    k.key, k.settled
                )),
            }
        }
        for hold in &usage {
            if !charged_holds.contains_key(*hold) {
                problems.push(format!(
                    "{}: usage transaction {hold} matches no key of ours",
                    f.account
                ));
            }
        }
        let spent = usize::try_from(b.spent).unwrap_or(usize::MAX);
        let free_here = explained_free
            .iter()
            .filter(|l| l.starts_with(&format!("chaos-a{a}-")))
            .count();
        if spent + free_here != delivered {
            problems.push(format!(
                "{}: spent {spent}, but {delivered} keys delivered an image ({free_here} of them \
                 free because their commit could not land)",
                f.account
            ));
        }
        charged_total += spent;
        delivered_total += delivered;
    }

    // Stop the daemons gracefully: nothing may remain under their profile directories.
    for (slot, mut daemon) in daemons.into_iter().enumerate() {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM);
        }
        let exited = tokio::task::spawn_blocking(move || {
            let limit = Instant::now() + Duration::from_secs(30);
            loop {
                match daemon.try_wait() {
                    Ok(Some(status)) => return Some(status),
                    Ok(None) if Instant::now() < limit => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => return None,
                }
            }
        })
        .await
        .expect("join");
        match exited {
            Some(status) if status.success() => {}
            other => problems.push(format!(
                "daemon {slot} did not exit cleanly on SIGTERM: {other:?}"
            )),
        }
    }
    let dir = profiles.path().to_path_buf();
    if !eventually(Duration::from_secs(10), || processes_under(&dir).is_empty()).await {
        problems.push(format!(
            "orphan Chromium after the daemons stopped: {:?}",
            processes_under(&dir)
        ));
    }

    // Keys that never got a definitive answer, or got one the test does not expect.
    for k in &keys {
        match &k.settled {
            Settled::Unexpected(what) => problems.push(format!("{}: unexpected {what}", k.key)),
            Settled::GaveUp(what) => problems.push(format!("{}: no answer: {what}", k.key)),
            _ => {}
        }
    }
    let injected_total: u32 = fault_log.injected.values().sum();
    for fault in Fault::ALL {
        let least = mode.least(fault, scheduled);
        let n = fault_log.injected.get(&fault).copied().unwrap_or(0) as usize;
        if n < least {
            problems.push(format!(
                "only {n} × {} injected (at least {least} wanted)",
                fault.name()
            ));
        }
    }
    if mode.long && (injected_total as usize) < scheduled {
        problems.push(format!(
            "{injected_total} faults injected of the {scheduled} scheduled"
        ));
    }

    // The report, on stderr and in the log directory.
    let (requests, responses) = {
        let stats = ctx.stats.lock().expect("stats lock");
        (stats.requests, stats.responses.clone())
    };
    let answered: u64 = responses
        .iter()
        .filter(|(what, _)| {
            what.trim_start_matches("webhook ")
                .starts_with(|c: char| c.is_ascii_digit())
        })
        .map(|(_, n)| n)
        .sum();
    let mut report = Vec::new();
    report.push(format!(
        "seed {seed} ({} mode: CHAOS_SEED={seed}{} replays it); load {:.1} min ({load_time:.1?}); \
         logs in {}",
        if mode.long { "long" } else { "short" },
        if mode.long {
            format!(" CHAOS_FAULTS={scheduled}")
        } else {
            String::new()
        },
        load_time.as_secs_f64() / 60.0,
        logs.display()
    ));
    report.push(format!(
        "faults: {injected_total} injected of {scheduled} scheduled, {} daemon(s), {}",
        mode.daemons,
        if mode.sentinel {
            "Redis: a primary, 2 replicas, 3 Sentinels (ledger.replica_acks = 1)"
        } else {
            "one Redis"
        }
    ));
    for fault in Fault::ALL {
        if mode.least(fault, scheduled) == 0 {
            continue;
        }
        report.push(format!(
            "  {:>5} × {}",
            fault_log.injected.get(&fault).copied().unwrap_or(0),
            fault.name()
        ));
    }
    if !fault_log.skipped.is_empty() {
        report.push(format!(
            "attempts that found nothing to hit, tried again up to 5 times ({}): {:?}",
            fault_log.skipped.len(),
            &fault_log.skipped[..fault_log.skipped.len().min(20)]
        ));
    }
    report.push(format!(
        "requests: {requests} sent (captures and webhooks), {answered} answered with a status"
    ));
    for (what, n) in &responses {
        report.push(format!("  {n:>6} × {what}"));
    }
    let count = |f: &dyn Fn(&KeyLog) -> bool| keys.iter().filter(|k| f(k)).count();
    report.push(format!(
        "{} keys: {} delivered ({} fresh, {} as replays), {} refused with 402, {} thrown \
         scripts refused with 400, {} unexpected, {} gave up; {} needed more than one attempt",
        keys.len(),
        count(&|k| matches!(k.settled, Settled::Delivered { .. })),
        count(&|k| matches!(k.settled, Settled::Delivered { fresh: Some(_) })),
        count(&|k| matches!(k.settled, Settled::Delivered { fresh: None })),
        count(&|k| matches!(k.settled, Settled::Refused { status: 402 })),
        count(&|k| k.kind == Kind::Throws && matches!(k.settled, Settled::Refused { status: 400 })),
        count(&|k| matches!(k.settled, Settled::Unexpected(_))),
        count(&|k| matches!(k.settled, Settled::GaveUp(_))),
        count(&|k| k.attempts > 1),
    ));
    let acknowledged = orders.iter().map(|o| o.acknowledged).sum::<u32>() as usize;
    report.push(format!(
        "orders: {orders_checked} paid, {acknowledged} order.paid deliveries acknowledged \
         ({} of them repeats, as Polar retries), each checked granted once",
        acknowledged.saturating_sub(orders_checked)
    ));
    let audits_during = audits.load(Ordering::Relaxed);
    report.push(format!(
        "invariant checks: {} (account audits at the end of {} of {scheduled} fault windows: {}; \
         background audits every 1.5 s: {audits_during}; final: {final_audits})",
        fault_log.window_audits + audits_during + final_audits,
        fault_log.windows_audited,
        fault_log.window_audits,
    ));
    report.push(format!(
        "{} accounts and {credits_checked} credits checked; {charged_total} charged, \
         {delivered_total} delivered, {} free because a commit could not land",
        funded.len(),
        explained_free.len()
    ));
    for (f, s) in funded.iter().zip(&snapshots) {
        let b = &s.balance;
        report.push(format!(
            "  {}: granted {}, available {}, spent {}, reserved {}",
            f.account, b.granted, b.available, b.spent, b.reserved
        ));
    }
    for line in &explained_free {
        report.push(format!("  free image: {line}"));
    }
    report.push(format!("violations: {}", problems.len()));
    for problem in &problems {
        report.push(format!("  - {problem}"));
    }
    for line in &report {
        eprintln!("chaos: {line}");
    }
    let _ = std::fs::write(logs.join("report.txt"), report.join("\n") + "\n");

    drop(redis);
    assert!(
        problems.is_empty(),
        "chaos (seed {seed}; daemon logs and report kept in {}) found {} problem(s):\n  - {}",
        logs.display(),
        problems.len(),
        problems.join("\n  - ")
    );
    if !mode.long && std::env::var_os("CHAOS_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&logs);
    }
    drop(profiles);
}
