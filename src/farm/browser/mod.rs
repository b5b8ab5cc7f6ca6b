//! The browser actor: one Chromium process and its tabs. It knows the mechanism (launch, prepare
//! tabs, run a capture on a tokio task, probe liveness and memory, drain and kill) and reports
//! facts to the supervisor, which owns every policy decision (when to restart, back-off,
//! recycling, health). Launching and connecting DevTools is in [`launch`]; one capture's task
//! in [`capture_task`].

mod capture_task;
mod launch;

use capture_task::CaptureTask;
use launch::{launch, Running};

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::Instrument;

use super::capture::CaptureSettings;
use super::messages::*;
use super::proc_tree;
use super::process::Placement;
use super::tab::{self, PreparedTab, TabError};
use crate::config::ChromiumConfig;
use crate::content_filters::ContentFilters;
use crate::telemetry::Metrics;

/// Everything a browser actor needs from configuration.
#[derive(Clone)]
pub struct BrowserSettings {
    pub chromium: ChromiumConfig,
    pub placement: Placement,
    pub tabs: usize,
    pub capture: CaptureSettings,
    /// The filter engines captures apply when asked.
    pub filters: ContentFilters,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// Longest a single DevTools command may take (at least the longest capture timeout).
    pub request_timeout: Duration,
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
            filters: self.settings.filters.clone(),
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
pub(super) struct CaptureDone {
    pub(super) generation: u64,
    pub(super) outcome: SlotOutcome,
    pub(super) busy: Duration,
    /// The tab could not be closed in time: the browser is wedged.
    pub(super) wedged: bool,
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
