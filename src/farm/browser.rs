//! The browser actor: one Chromium process and its tabs. It knows the mechanism (launch, prepare
//! tabs, run a capture on a tokio task, probe liveness and memory, drain and kill) and reports
//! facts to the supervisor, which owns every policy decision (when to restart, back-off,
//! recycling, health).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::Browser;
use futures::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use super::capture::{self, CaptureSettings, Failure};
use super::job::{CaptureError, CaptureOutput, Job, Timings};
use super::messages::*;
use super::proc_tree;
use super::process::{ChromiumProcess, Placement};
use super::tab::{self, PreparedTab, TabError};
use crate::config::ChromiumConfig;
use crate::telemetry::Metrics;

/// Everything a browser actor needs from configuration.
#[derive(Clone)]
pub struct BrowserSettings {
    pub chromium: ChromiumConfig,
    pub placement: Placement,
    pub tabs: usize,
    pub capture: CaptureSettings,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// Longest a single DevTools command may take (at least the longest capture timeout).
    pub request_timeout: Duration,
}

/// A running Chromium and the signal that it died.
struct Running {
    process: ChromiumProcess,
    browser: Arc<Browser>,
    /// Becomes `Some(reason)` when the process exits or the DevTools connection ends.
    dead: watch::Receiver<Option<RestartReason>>,
}

impl Running {
    /// Drops the DevTools client and kills the process group.
    async fn shutdown(self) {
        drop(self.browser);
        self.process.kill().await;
    }
}

pub struct BrowserActor {
    index: usize,
    settings: BrowserSettings,
    supervisor: SupervisorLink,
    metrics: Arc<Metrics>,
    /// Captures running in the whole farm (shared with the supervisor for draining).
    farm_in_flight: Arc<AtomicUsize>,
    /// Incremented at every launch; messages about older generations are stale.
    generation: u64,
    running: Option<Running>,
    launching: bool,
    /// Fresh tabs ready for the next captures.
    spare: VecDeque<PreparedTab>,
    preparing: usize,
    in_flight: usize,
    /// Set while draining before a restart: no new work is taken.
    restart_pending: Option<RestartReason>,
    /// Set by [`Kill`]: never launch again.
    stopped: bool,
}

impl BrowserActor {
    pub fn new(
        index: usize,
        settings: BrowserSettings,
        supervisor: SupervisorLink,
        metrics: Arc<Metrics>,
        farm_in_flight: Arc<AtomicUsize>,
    ) -> Self {
        BrowserActor {
            index,
            settings,
            supervisor,
            metrics,
            farm_in_flight,
            generation: 0,
            running: None,
            launching: false,
            spare: VecDeque::new(),
            preparing: 0,
            in_flight: 0,
            restart_pending: None,
            stopped: false,
        }
    }

    /// Keeps fresh tabs ready: `tabs + 1` while idle (one spare beyond the tab slots); while it
    /// works, one while a slot is free, so the next capture finds its context made; none while
    /// every slot is busy. A spare holds a renderer, and at saturation the next capture waits
    /// for a slot anyway: making its tab then costs the same CPU and keeps peak memory down.
    fn top_up(&mut self, ctx: &mut Context<Self>) {
        let Some(running) = &self.running else { return };
        if self.restart_pending.is_some() {
            return;
        }
        let target = if self.in_flight == 0 {
            self.settings.tabs + 1
        } else if self.in_flight < self.settings.tabs {
            1
        } else {
            0
        };
        while self.spare.len() + self.preparing < target {
            self.preparing += 1;
            let browser = running.browser.clone();
            let generation = self.generation;
            let addr = ctx.address();
            let (width, height) = self.settings.capture.default_viewport;
            tokio::spawn(async move {
                let result = tab::prepare_sized(&browser, width, height).await;
                addr.do_send(TabReady { generation, result });
            });
        }
    }

    /// Kills the process and reports it down. In-flight captures notice through `dead`.
    fn stop(&mut self, reason: RestartReason) {
        self.restart_pending = None;
        self.spare.clear();
        self.preparing = 0;
        self.in_flight = 0;
        self.metrics
            .browser_memory_bytes
            .with_label_values(&[&self.index.to_string()])
            .set(0);
        let Some(running) = self.running.take() else {
            return;
        };
        let supervisor = self.supervisor.down.clone();
        let (index, generation) = (self.index, self.generation);
        tracing::info!(
            browser = index,
            pid = running.process.pid,
            reason = reason.as_str(),
            "stopping browser"
        );
        // Tell the supervisor first, so it neither dispatches nor retries onto this browser while
        // its processes are being killed; the relaunch gets a new generation and profile.
        supervisor.do_send(BrowserDown {
            index,
            generation,
            reason,
        });
        tokio::spawn(running.shutdown());
    }
}

impl Actor for BrowserActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.probe_interval, |act, ctx| {
            let Some(running) = &act.running else { return };
            let browser = running.browser.clone();
            let pid = running.process.pid;
            let generation = act.generation;
            let timeout = act.settings.probe_timeout;
            let addr = ctx.address();
            tokio::spawn(async move {
                let alive = matches!(
                    tokio::time::timeout(timeout, browser.version()).await,
                    Ok(Ok(_))
                );
                let rss = tokio::task::spawn_blocking(move || proc_tree::tree_memory_bytes(pid))
                    .await
                    .unwrap_or(0);
                addr.do_send(ProbeResult {
                    generation,
                    alive,
                    rss,
                });
            });
        });
    }
}

impl Handler<Launch> for BrowserActor {
    type Result = ();

    fn handle(&mut self, _: Launch, ctx: &mut Context<Self>) {
        if self.running.is_some() || self.launching || self.stopped {
            return;
        }
        self.launching = true;
        self.generation += 1;
        let generation = self.generation;
        let settings = self.settings.clone();
        let label = format!("b{}", self.index);
        let addr = ctx.address();
        tokio::spawn(async move {
            let result = launch(&settings, &label).await;
            addr.do_send(Launched { generation, result });
        });
    }
}

async fn launch(
    settings: &BrowserSettings,
    label: &str,
) -> Result<(Running, Vec<PreparedTab>), String> {
    let process = ChromiumProcess::launch(&settings.chromium, &settings.placement, label)
        .await
        .map_err(|e| e.to_string())?;
    let config = HandlerConfig {
        viewport: None,
        request_timeout: settings.request_timeout,
        // Certificate errors are navigation errors (`navigation_failed`), never ignored.
        ignore_https_errors: false,
        // Captures use raw DevTools calls and lifecycle events only: a page gets no Runtime,
        // Network, Performance or Log domain and no utility world, each of which costs a fresh
        // renderer CPU on every capture (vendor/chromiumoxide/PATCHES.md).
        lean_pages: true,
        ..HandlerConfig::default()
    };
    let connect = tokio::time::timeout(
        Duration::from_millis(settings.chromium.launch_timeout_ms),
        Browser::connect_with_config(process.ws_url.clone(), config),
    )
    .await;
    let (browser, mut handler) = match connect {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            process.kill().await;
            return Err(format!("devtools connection failed: {e}"));
        }
        Err(_) => {
            process.kill().await;
            return Err("devtools connection timed out".into());
        }
    };
    let (dead_tx, dead) = watch::channel(None);
    let dead_tx = Arc::new(dead_tx);
    let set_dead = |tx: Arc<watch::Sender<Option<RestartReason>>>, reason| {
        tx.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    };
    // The handler must be polled all the time; its first error means the connection is gone
    // (after an error it never yields again).
    let tx = dead_tx.clone();
    tokio::spawn(async move {
        while let Some(event) = handler.next().await {
            if let Err(e) = event {
                tracing::debug!("devtools handler ended: {e}");
                break;
            }
        }
        set_dead(tx, RestartReason::CdpDisconnected);
    });
    let exited = process.exited();
    let tx = dead_tx.clone();
    tokio::spawn(async move {
        exited.await;
        set_dead(tx, RestartReason::ProcessExited);
    });
    let browser = Arc::new(browser);
    let mut tabs = Vec::with_capacity(settings.tabs + 1);
    let (width, height) = settings.capture.default_viewport;
    for _ in 0..=settings.tabs {
        match tab::prepare_sized(&browser, width, height).await {
            Ok(tab) => tabs.push(tab),
            Err(e) => {
                drop(browser);
                process.kill().await;
                return Err(format!("could not open a tab: {e}"));
            }
        }
    }
    Ok((
        Running {
            process,
            browser,
            dead,
        },
        tabs,
    ))
}

#[derive(Message)]
#[rtype(result = "()")]
struct Launched {
    generation: u64,
    result: Result<(Running, Vec<PreparedTab>), String>,
}

impl Handler<Launched> for BrowserActor {
    type Result = ();

    fn handle(&mut self, msg: Launched, ctx: &mut Context<Self>) {
        self.launching = false;
        let index = self.index;
        if msg.generation != self.generation || self.stopped {
            if let Ok((running, _)) = msg.result {
                tokio::spawn(running.shutdown());
            }
            return;
        }
        match msg.result {
            Ok((running, tabs)) => {
                let pid = running.process.pid;
                tracing::info!(
                    browser = index,
                    pid,
                    generation = msg.generation,
                    "browser ready"
                );
                let mut dead = running.dead.clone();
                let addr = ctx.address();
                let generation = msg.generation;
                tokio::spawn(async move {
                    let reason = dead.wait_for(|d| d.is_some()).await.ok().and_then(|r| *r);
                    if let Some(reason) = reason {
                        addr.do_send(Died { generation, reason });
                    }
                });
                self.running = Some(running);
                self.spare = tabs.into();
                self.supervisor.up.do_send(BrowserUp {
                    index,
                    generation,
                    pid,
                });
            }
            Err(error) => {
                tracing::warn!(browser = index, "browser launch failed: {error}");
                self.supervisor.down.do_send(BrowserDown {
                    index,
                    generation: msg.generation,
                    reason: RestartReason::LaunchFailed,
                });
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Died {
    generation: u64,
    reason: RestartReason,
}

impl Handler<Died> for BrowserActor {
    type Result = ();

    fn handle(&mut self, msg: Died, _: &mut Context<Self>) {
        if msg.generation == self.generation && self.running.is_some() {
            tracing::warn!(
                browser = self.index,
                reason = msg.reason.as_str(),
                "browser died"
            );
            self.stop(msg.reason);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct TabReady {
    generation: u64,
    result: Result<PreparedTab, TabError>,
}

impl Handler<TabReady> for BrowserActor {
    type Result = ();

    fn handle(&mut self, msg: TabReady, _: &mut Context<Self>) {
        if msg.generation != self.generation || self.running.is_none() {
            return; // a stale browser's tab: it dies with its process
        }
        self.preparing = self.preparing.saturating_sub(1);
        match msg.result {
            Ok(tab) => self.spare.push_back(tab),
            Err(TabError::Timeout(_)) => self.stop(RestartReason::Unresponsive),
            Err(e) => tracing::warn!(browser = self.index, "could not prepare a tab: {e}"),
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ProbeResult {
    generation: u64,
    alive: bool,
    rss: u64,
}

impl Handler<ProbeResult> for BrowserActor {
    type Result = ();

    fn handle(&mut self, msg: ProbeResult, _: &mut Context<Self>) {
        if msg.generation != self.generation || self.running.is_none() {
            return;
        }
        if !msg.alive {
            tracing::warn!(browser = self.index, "browser failed its liveness probe");
            self.stop(RestartReason::Unresponsive);
            return;
        }
        self.metrics
            .browser_memory_bytes
            .with_label_values(&[&self.index.to_string()])
            .set(i64::try_from(msg.rss).unwrap_or(i64::MAX));
        self.supervisor.memory.do_send(MemorySample {
            index: self.index,
            generation: self.generation,
            bytes: msg.rss,
        });
    }
}

impl Handler<Restart> for BrowserActor {
    type Result = ();

    fn handle(&mut self, Restart(reason): Restart, _: &mut Context<Self>) {
        if self.running.is_none() {
            return;
        }
        self.restart_pending = Some(reason);
        self.spare.clear();
        if self.in_flight == 0 {
            self.stop(reason);
        }
    }
}

impl Handler<Kill> for BrowserActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Kill, _: &mut Context<Self>) -> Self::Result {
        self.stopped = true;
        self.generation += 1;
        self.spare.clear();
        let running = self.running.take();
        Box::pin(async move {
            if let Some(running) = running {
                running.shutdown().await;
            }
        })
    }
}

impl Handler<RunCapture> for BrowserActor {
    type Result = ();

    fn handle(&mut self, msg: RunCapture, ctx: &mut Context<Self>) {
        let index = self.index;
        let usable = msg.generation == self.generation && self.restart_pending.is_none();
        let Some(running) = self.running.as_ref().filter(|_| usable) else {
            self.supervisor.bounce.do_send(Bounce {
                index,
                generation: msg.generation,
                job: msg.job,
            });
            return;
        };
        self.in_flight += 1;
        let span = tracing::info_span!(
            "capture",
            request_id = %msg.job.id,
            browser = index,
            attempt = msg.job.attempt
        );
        let task = CaptureTask {
            index,
            generation: self.generation,
            tab: self.spare.pop_front(),
            browser: running.browser.clone(),
            dead: running.dead.clone(),
            settings: self.settings.capture,
            metrics: self.metrics.clone(),
            supervisor: self.supervisor.clone(),
            browser_addr: ctx.address(),
            farm_in_flight: self.farm_in_flight.clone(),
        };
        tokio::spawn(task.run(msg.job).instrument(span));
        self.top_up(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct CaptureDone {
    generation: u64,
    outcome: SlotOutcome,
    busy: Duration,
    /// The tab could not be closed in time: the browser is wedged.
    wedged: bool,
}

impl Handler<CaptureDone> for BrowserActor {
    type Result = ();

    fn handle(&mut self, msg: CaptureDone, ctx: &mut Context<Self>) {
        if msg.generation != self.generation || self.running.is_none() {
            return;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if msg.wedged {
            self.stop(RestartReason::Unresponsive);
            return;
        }
        self.supervisor.slot_freed.do_send(SlotFreed {
            index: self.index,
            generation: self.generation,
            outcome: msg.outcome,
            busy: msg.busy,
        });
        match self.restart_pending {
            Some(reason) if self.in_flight == 0 => self.stop(reason),
            Some(_) => {}
            None => self.top_up(ctx),
        }
    }
}

/// Counts a capture in the farm's in-flight total for as long as it lives.
struct InFlightGuard {
    counter: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl InFlightGuard {
    fn new(counter: Arc<AtomicUsize>, metrics: Arc<Metrics>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        metrics.captures_in_flight.inc();
        InFlightGuard { counter, metrics }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
        self.metrics.captures_in_flight.dec();
    }
}

/// One capture running on a tokio task, owning its job until it is answered.
struct CaptureTask {
    index: usize,
    generation: u64,
    tab: Option<PreparedTab>,
    browser: Arc<Browser>,
    dead: watch::Receiver<Option<RestartReason>>,
    settings: CaptureSettings,
    metrics: Arc<Metrics>,
    supervisor: SupervisorLink,
    browser_addr: Addr<BrowserActor>,
    farm_in_flight: Arc<AtomicUsize>,
}

/// How the page work ended.
enum Ended {
    Done(Result<capture::Rendered, CaptureError>),
    Overrun,
    /// Ran past its deadline waiting on the page's own content (a frame that never loads, a
    /// script that never settles): the page's doing, not the browser's.
    PageTimeout,
    BrowserDied,
    TabCrashed,
    /// DevTools failed the capture while the browser lives (a command refused or lost under
    /// load, a context that could not be made): the browser's fault, not the page's or ours.
    Fault(String),
}

impl CaptureTask {
    async fn run(mut self, job: Job) {
        let _guard = InFlightGuard::new(self.farm_in_flight.clone(), self.metrics.clone());
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(job.deadline);

        // A tab, fresh from the spare pool or (rarely) made now. Made on its own task, so a
        // deadline that passes mid-way cannot strand a half-made context: a late tab is disposed.
        let tab = match self.tab.take() {
            Some(tab) => tab,
            None => {
                let browser = self.browser.clone();
                let (width, height) = self.settings.default_viewport;
                let mut making =
                    tokio::spawn(async move { tab::prepare_sized(&browser, width, height).await });
                match tokio::time::timeout_at(deadline, &mut making).await {
                    Ok(Ok(Ok(tab))) => tab,
                    Ok(Ok(Err(e))) => {
                        let died = self.died_soon().await;
                        let ended = if died {
                            Ended::BrowserDied
                        } else {
                            Ended::Fault(format!("no tab: {e}"))
                        };
                        return self.conclude(job, started, ended, None).await;
                    }
                    Ok(Err(e)) => {
                        let ended =
                            Ended::Done(Err(CaptureError::Internal(format!("no tab: {e}"))));
                        return self.conclude(job, started, ended, None).await;
                    }
                    Err(_) => {
                        let browser = self.browser.clone();
                        tokio::spawn(async move {
                            if let Ok(Ok(late)) = making.await {
                                let _ = tab::dispose(&browser, late).await;
                            }
                        });
                        return self.conclude(job, started, Ended::Overrun, None).await;
                    }
                }
            }
        };

        let context = started.elapsed();
        let crashed =
            tokio::time::timeout_at(deadline, tab.page.event_listener::<EventTargetCrashed>())
                .await;
        let mut crashed = match crashed {
            Ok(stream) => stream.ok(),
            Err(_) => return self.conclude(job, started, Ended::Overrun, Some(tab)).await,
        };
        let mut dead = self.dead.clone();
        let spec = job.spec.clone();
        let progress = capture::Progress::default();
        let ended = tokio::select! {
            result = tokio::time::timeout_at(deadline, capture::run(&tab.page, tab.viewport, &spec, self.settings, deadline, &progress)) => match result {
                Ok(Ok(mut rendered)) => {
                    rendered.phases.context = context;
                    Ended::Done(Ok(rendered))
                }
                Ok(Err(Failure::Capture(e))) => Ended::Done(Err(e)),
                Ok(Err(Failure::Cdp(e))) => {
                    if self.died_soon().await {
                        Ended::BrowserDied
                    } else {
                        Ended::Fault(format!("devtools: {e}"))
                    }
                }
                Err(_) if progress.waiting_on_page() => Ended::PageTimeout,
                Err(_) => Ended::Overrun,
            },
            _ = async { dead.wait_for(|d| d.is_some()).await.map(|_| ()) } => Ended::BrowserDied,
            Some(_) = async { match crashed.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } } => Ended::TabCrashed,
        };
        self.conclude(job, started, ended, Some(tab)).await;
    }

    /// True when the browser is dead or dies within a moment (a CDP error usually means that).
    async fn died_soon(&self) -> bool {
        let mut dead = self.dead.clone();
        let died = tokio::time::timeout(Duration::from_millis(150), dead.wait_for(|d| d.is_some()))
            .await
            .is_ok();
        died
    }

    /// Answers (or hands back) the job first, then cleans the tab up and frees the slot.
    async fn conclude(
        self,
        mut job: Job,
        started: Instant,
        ended: Ended,
        tab: Option<PreparedTab>,
    ) {
        let render = started.elapsed();
        let outcome = match ended {
            Ended::Done(Ok(rendered)) if rendered.image.len() > job.spec.max_output_bytes => {
                let error = CaptureError::OutputTooLarge {
                    bytes: rendered.image.len(),
                    limit: job.spec.max_output_bytes,
                };
                tracing::debug!(request_id = %job.id, "{error}");
                job.finish(Err(error));
                SlotOutcome::PageError
            }
            Ended::Done(Ok(rendered)) => {
                self.metrics
                    .render_seconds
                    .with_label_values(&[job.spec.format.as_str()])
                    .observe(render.as_secs_f64());
                let output = CaptureOutput {
                    image: rendered.image.into(),
                    format: job.spec.format,
                    width: rendered.width,
                    height: rendered.height,
                    truncated: rendered.truncated,
                    timings: Timings {
                        queue: job.queued_before,
                        render,
                        phases: rendered.phases,
                    },
                };
                job.finish(Ok(output));
                SlotOutcome::Success
            }
            Ended::Done(Err(error)) => {
                tracing::debug!(request_id = %job.id, code = error.code(), "capture failed: {error}");
                job.finish(Err(error));
                SlotOutcome::PageError
            }
            Ended::Overrun => {
                tracing::warn!(request_id = %job.id, browser = self.index, "capture overran its deadline");
                job.finish(Err(CaptureError::Timeout));
                SlotOutcome::Overrun
            }
            Ended::PageTimeout => {
                tracing::debug!(request_id = %job.id, browser = self.index, "the page did not settle before the deadline");
                job.finish(Err(CaptureError::Timeout));
                SlotOutcome::PageError
            }
            Ended::TabCrashed => {
                // Only this capture's renderer died, and what killed it was the page (memory,
                // a renderer fault): retrying it would only take another renderer down.
                tracing::info!(request_id = %job.id, browser = self.index, "the page crashed its renderer");
                job.finish(Err(CaptureError::PageCrashed));
                SlotOutcome::PageError
            }
            ended @ (Ended::BrowserDied | Ended::Fault(_)) => {
                let browser_died = matches!(ended, Ended::BrowserDied);
                let fault = match ended {
                    Ended::Fault(detail) => {
                        tracing::warn!(request_id = %job.id, browser = self.index, "browser failed a capture: {detail}");
                        true
                    }
                    _ => {
                        tracing::warn!(request_id = %job.id, browser = self.index, "browser lost under a capture");
                        false
                    }
                };
                // The supervisor retries it once elsewhere if the deadline allows.
                self.supervisor.lost.do_send(BrowserLost {
                    index: self.index,
                    generation: self.generation,
                    browser_died,
                    fault,
                    job,
                });
                SlotOutcome::PageError
            }
        };
        // Close the tab's context (killing the page if it is still busy). A browser that cannot
        // do that in time is wedged.
        let alive = self.dead.borrow().is_none();
        let wedged = match tab {
            Some(tab) if alive => {
                matches!(
                    tab::dispose(&self.browser, tab).await,
                    Err(TabError::Timeout(_))
                )
            }
            _ => false,
        };
        self.browser_addr.do_send(CaptureDone {
            generation: self.generation,
            outcome,
            busy: started.elapsed(),
            wedged,
        });
    }
}
