//! The supervisor actor: owns the fleet, the bounded FIFO queue, job deadlines, dispatch to free
//! tabs, and the restart policy (exponential back-off, unhealthy marking, recycling after N
//! captures, memory limit, repeated overruns). It knows nothing of Chromium or HTTP: browsers are
//! [`BrowserHandle`]s that say "up", "down", "slot freed" through a [`SupervisorLink`].

use crate::telemetry::events::{BrowserRestarted, InternalEvent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::job::{CaptureError, Job, MIN_REMAINING};
use super::messages::*;
use crate::config::FarmConfig;
use crate::telemetry::Metrics;

/// A retry after a browser died is only worth it with this much time left.
const MIN_RETRY_REMAINING: Duration = Duration::from_millis(500);
/// How often queued jobs are checked against their deadlines.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Ready,
    Draining,
    Restarting,
}

/// The supervisor's view of one browser.
struct Slot {
    browser: BrowserHandle,
    state: State,
    generation: u64,
    /// Tabs that can take a job now.
    free: usize,
    captures: u64,
    overruns: u32,
    /// Consecutive failures (crashes, failed launches) since the last successful capture.
    failures: u32,
    pid: u32,
    /// Value of the supervisor's dispatch counter when this browser last got a job.
    last_dispatch: u64,
}

pub struct Supervisor {
    farm: FarmConfig,
    /// Tabs per browser.
    tabs: usize,
    start_browser: StartBrowser,
    metrics: Arc<Metrics>,
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    accepting: bool,
    in_flight: Arc<AtomicUsize>,
    /// Jobs dispatched so far (orders browsers by when they last got work).
    dispatches: u64,
    /// Moving average of how long a job holds a tab, for `Retry-After`.
    mean_busy: Duration,
}

impl Supervisor {
    /// A supervisor of `farm.browsers` browsers of `tabs` tabs each, made by `start_browser`;
    /// `in_flight` counts the captures running in them (the browsers keep it).
    pub fn new(
        farm: FarmConfig,
        tabs: usize,
        start_browser: StartBrowser,
        in_flight: Arc<AtomicUsize>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Every reason's series exists from the start, so the first restart shows in increase().
        BrowserRestarted::<RestartReason>::register(&metrics);
        Supervisor {
            farm,
            tabs,
            start_browser,
            metrics,
            slots: Vec::new(),
            queue: VecDeque::new(),
            accepting: true,
            in_flight,
            dispatches: 0,
            mean_busy: Duration::from_millis(500),
        }
    }

    fn is_unhealthy(&self, slot: &Slot) -> bool {
        slot.failures >= self.farm.unhealthy_after
    }

    fn publish_gauges(&self) {
        let mut counts = [0i64; 5];
        for slot in &self.slots {
            let i = if self.is_unhealthy(slot) && slot.state != State::Ready {
                4
            } else {
                match slot.state {
                    State::Starting => 0,
                    State::Ready => 1,
                    State::Draining => 2,
                    State::Restarting => 3,
                }
            };
            counts[i] += 1;
        }
        for (state, count) in crate::telemetry::metrics::BROWSER_STATES.iter().zip(counts) {
            self.metrics.browsers.with_label_values(&[state]).set(count);
        }
        self.metrics.queue_depth.set(self.queue.len() as i64);
        self.metrics
            .queue_capacity
            .set(i64::try_from(self.farm.queue_capacity).unwrap_or(i64::MAX));
        let healthy = counts[1] > 0 && counts[4] == 0;
        self.metrics.fleet_healthy.set(i64::from(healthy));
    }

    /// Hands queued jobs to free tabs, least-loaded browser first. Invariant afterwards: the
    /// queue is empty or no ready browser has a free tab.
    fn dispatch(&mut self) {
        while let Some(job) = self.queue.front() {
            if job.expired() {
                if let Some(mut job) = self.queue.pop_front() {
                    job.finish(Err(CaptureError::Timeout));
                }
                continue;
            }
            // The browser with the most free tabs, then the one that waited longest: work is
            // spread so each browser gets idle time to open its next fresh tabs.
            let avoid = job.avoid;
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == State::Ready && s.free > 0)
                .filter(|(i, s)| avoid != Some((*i, s.generation)))
                .max_by_key(|(_, s)| (s.free, std::cmp::Reverse(s.last_dispatch)))
                .map(|(i, _)| i);
            let Some(index) = best else { break };
            let Some(mut job) = self.queue.pop_front() else {
                break;
            };
            let waited = job.enqueued_at.elapsed();
            job.queued_before += waited;
            self.metrics
                .queue_wait_seconds
                .observe(waited.as_secs_f64());
            self.dispatches += 1;
            let slot = &mut self.slots[index];
            slot.free -= 1;
            slot.last_dispatch = self.dispatches;
            slot.browser.run.do_send(RunCapture {
                generation: slot.generation,
                job,
            });
        }
        self.publish_gauges();
    }

    /// Drops jobs whose deadline has passed while they waited.
    fn sweep(&mut self) {
        let before = self.queue.len();
        let mut kept = VecDeque::with_capacity(before);
        for mut job in self.queue.drain(..) {
            if job.expired() {
                job.finish(Err(CaptureError::Timeout));
            } else {
                kept.push_back(job);
            }
        }
        self.queue = kept;
        if self.queue.len() != before {
            self.publish_gauges();
        }
    }

    /// Policy: take the browser out of dispatch and have it restart once drained.
    fn restart(&mut self, index: usize, reason: RestartReason) {
        let slot = &mut self.slots[index];
        if slot.state != State::Ready {
            return;
        }
        tracing::info!(
            browser = index,
            reason = reason.as_str(),
            captures = slot.captures,
            "restarting browser"
        );
        slot.state = State::Draining;
        slot.free = 0;
        slot.browser.restart.do_send(Restart(reason));
        self.publish_gauges();
    }

    /// When a refused client may expect room: the time the ready tabs need to work through the
    /// queue, from the recent mean time a job holds a tab (1 s to 60 s).
    fn retry_after(&self) -> Duration {
        let tabs = self.tabs
            * self
                .slots
                .iter()
                .filter(|s| s.state == State::Ready)
                .count()
                .max(1);
        let wait = self
            .mean_busy
            .mul_f64((self.queue.len() + 1) as f64 / tabs as f64);
        wait.clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    fn backoff(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exp = failures.saturating_sub(1).min(20);
        let ms = self
            .farm
            .restart_backoff_min_ms
            .saturating_mul(1u64 << exp)
            .min(self.farm.restart_backoff_max_ms);
        Duration::from_millis(ms)
    }

    fn status(&self) -> FarmStatus {
        FarmStatus {
            ready: self
                .slots
                .iter()
                .filter(|s| s.state == State::Ready)
                .count(),
            total: self.slots.len(),
            queue_depth: self.queue.len(),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            pids: self
                .slots
                .iter()
                .filter(|s| s.pid != 0)
                .map(|s| s.pid)
                .collect(),
            accepting: self.accepting,
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Every job is answered: those still queued when the supervisor stops fail cleanly.
        ctx.set_mailbox_capacity(4096);
        for index in 0..self.farm.browsers {
            let browser = (self.start_browser)(index, SupervisorLink::of(&ctx.address()));
            browser.launch.do_send(Launch);
            self.slots.push(Slot {
                browser,
                state: State::Starting,
                generation: 0,
                free: 0,
                captures: 0,
                overruns: 0,
                failures: 0,
                pid: 0,
                last_dispatch: 0,
            });
        }
        ctx.run_interval(SWEEP_INTERVAL, |act, _| act.sweep());
        self.publish_gauges();
    }
}

impl Handler<Submit> for Supervisor {
    type Result = Result<(), CaptureError>;

    fn handle(&mut self, Submit(mut job): Submit, _: &mut Context<Self>) -> Self::Result {
        if !self.accepting {
            return Err(CaptureError::ShuttingDown);
        }
        if job.remaining() < MIN_REMAINING {
            // A job must carry a usable deadline; one already spent is refused, not queued.
            return Err(CaptureError::Timeout);
        }
        if self
            .slots
            .iter()
            .all(|s| self.is_unhealthy(s) && s.state != State::Ready)
        {
            return Err(CaptureError::Unavailable);
        }
        if self.queue.len() >= self.farm.queue_capacity {
            return Err(CaptureError::QueueFull {
                retry_after: self.retry_after(),
            });
        }
        job.enqueued_at = Instant::now();
        self.queue.push_back(job);
        self.dispatch();
        Ok(())
    }
}

impl Handler<GetStatus> for Supervisor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<BrowserUp> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: BrowserUp, _: &mut Context<Self>) {
        let tabs = self.tabs;
        let Some(slot) = self.slots.get_mut(msg.index) else {
            return;
        };
        if msg.generation < slot.generation {
            return;
        }
        slot.generation = msg.generation;
        slot.state = State::Ready;
        slot.free = tabs;
        slot.captures = 0;
        slot.overruns = 0;
        slot.pid = msg.pid;
        if !self.accepting && self.queue.is_empty() {
            self.publish_gauges();
            return;
        }
        self.dispatch();
    }
}

impl Handler<BrowserDown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: BrowserDown, ctx: &mut Context<Self>) {
        let Some(slot) = self.slots.get_mut(msg.index) else {
            return;
        };
        if msg.generation < slot.generation {
            return;
        }
        slot.generation = msg.generation;
        slot.state = State::Restarting;
        slot.free = 0;
        slot.pid = 0;
        if msg.reason.is_failure() {
            slot.failures = slot.failures.saturating_add(1);
        }
        let failures = slot.failures;
        let relaunch_in = self.accepting.then(|| self.backoff(failures));
        BrowserRestarted {
            browser: msg.index,
            reason: msg.reason,
            planned: !msg.reason.is_failure(),
            failures,
            unhealthy_after: self.farm.unhealthy_after,
            relaunch_in,
        }
        .emit(&self.metrics);
        self.publish_gauges();
        let Some(delay) = relaunch_in else {
            return;
        };
        let index = msg.index;
        ctx.run_later(delay, move |act, _| {
            if !act.accepting {
                return;
            }
            if let Some(slot) = act.slots.get_mut(index) {
                if slot.state == State::Restarting {
                    slot.state = State::Starting;
                    slot.browser.launch.do_send(Launch);
                }
            }
            act.publish_gauges();
        });
    }
}

impl Handler<SlotFreed> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SlotFreed, _: &mut Context<Self>) {
        let Some(slot) = self.slots.get_mut(msg.index) else {
            return;
        };
        if msg.generation != slot.generation || slot.state != State::Ready {
            return;
        }
        slot.free += 1;
        slot.captures += 1;
        self.mean_busy = self.mean_busy.mul_f64(0.8) + msg.busy.mul_f64(0.2);
        match msg.outcome {
            SlotOutcome::Success => {
                slot.overruns = 0;
                slot.failures = 0;
            }
            SlotOutcome::PageError => {}
            SlotOutcome::Overrun => slot.overruns += 1,
        }
        let (overruns, captures) = (slot.overruns, slot.captures);
        if overruns >= self.farm.max_overruns {
            self.restart(msg.index, RestartReason::DeadlineOverrun);
        } else if self.farm.recycle_after > 0 && captures >= self.farm.recycle_after {
            self.restart(msg.index, RestartReason::Recycled);
        }
        self.dispatch();
    }
}

impl Handler<BrowserLost> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: BrowserLost, _: &mut Context<Self>) {
        let mut job = msg.job;
        if self.accepting_or_draining()
            && job.attempt == 0
            && job.remaining() >= MIN_RETRY_REMAINING
        {
            tracing::info!(request_id = %job.id, from_browser = msg.index, "retrying on another browser");
            job.attempt = 1;
            job.avoid = msg.browser_died.then_some((msg.index, msg.generation));
            job.enqueued_at = Instant::now();
            self.queue.push_front(job);
            self.dispatch();
        } else if msg.fault {
            job.finish(Err(CaptureError::BrowserError));
        } else {
            job.finish(Err(CaptureError::BrowserCrashed));
        }
    }
}

impl Supervisor {
    /// While draining for shutdown, accepted jobs are still served (and retried).
    fn accepting_or_draining(&self) -> bool {
        self.accepting || self.slots.iter().any(|s| s.state == State::Ready)
    }
}

impl Handler<Bounce> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Bounce, _: &mut Context<Self>) {
        if let Some(slot) = self.slots.get_mut(msg.index) {
            if slot.generation == msg.generation && slot.state == State::Ready {
                slot.free += 1;
            }
        }
        let mut job = msg.job;
        if !self.accepting_or_draining() {
            job.finish(Err(CaptureError::ShuttingDown));
            return;
        }
        job.enqueued_at = Instant::now();
        self.queue.push_front(job);
        self.dispatch();
    }
}

impl Handler<MemorySample> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: MemorySample, _: &mut Context<Self>) {
        let limit = self.farm.max_browser_memory_mb.saturating_mul(1024 * 1024);
        let current = self
            .slots
            .get(msg.index)
            .is_some_and(|s| s.generation == msg.generation);
        if limit > 0 && msg.bytes > limit && current {
            tracing::warn!(
                browser = msg.index,
                bytes = msg.bytes,
                limit,
                "browser over its memory limit"
            );
            self.restart(msg.index, RestartReason::MemoryLimit);
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.accepting = false;
        let until = Instant::now() + msg.grace;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let mut done_tx = Some(done_tx);
        tracing::info!(
            queued = self.queue.len(),
            in_flight = self.in_flight.load(Ordering::SeqCst),
            "draining captures"
        );
        // Accepted jobs (queued and running) may finish until the grace period ends.
        ctx.run_interval(Duration::from_millis(20), move |act, ctx| {
            // Dispatched jobs still in a browser's mailbox hold a tab (`free` below its maximum)
            // before their task counts itself in flight.
            let tabs = act.tabs;
            let drained = act.queue.is_empty()
                && act.in_flight.load(Ordering::SeqCst) == 0
                && act
                    .slots
                    .iter()
                    .all(|s| s.state != State::Ready || s.free == tabs);
            let Some(tx) = done_tx.take_if(|_| drained || Instant::now() >= until) else {
                return;
            };
            for mut job in act.queue.drain(..) {
                job.finish(Err(CaptureError::ShuttingDown));
            }
            let kills: Vec<_> = act.slots.iter().map(|s| s.browser.kill.clone()).collect();
            for slot in &mut act.slots {
                slot.state = State::Restarting;
                slot.free = 0;
                slot.pid = 0;
            }
            act.publish_gauges();
            ctx.spawn(
                async move {
                    futures::future::join_all(kills.iter().map(|k| k.send(Kill))).await;
                    tracing::info!("all browsers closed");
                    let _ = tx.send(());
                }
                .into_actor(act),
            );
        });
        Box::pin(async move {
            let _ = done_rx.await;
        })
    }
}

#[cfg(test)]
mod tests {
    //! The restart and dispatch policy with scripted browsers: no Chromium, no HTTP. Each
    //! scripted browser comes up at once when launched, answers every capture at once with the
    //! outcome it was given (or holds it), and goes down at once when told to restart.

    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;
    use crate::farm::job::{CaptureSpec, ImageFormat, WaitUntil};

    type Log = Arc<Mutex<Vec<String>>>;

    struct Scripted {
        index: usize,
        link: SupervisorLink,
        log: Log,
        generation: u64,
        /// How each capture ends; `None`: the capture is held (its tab stays busy).
        outcome: Option<SlotOutcome>,
        held: Vec<Job>,
    }

    impl Scripted {
        fn note(&self, what: String) {
            if let Ok(mut log) = self.log.lock() {
                log.push(format!("b{} {what}", self.index));
            }
        }
    }

    impl Actor for Scripted {
        type Context = Context<Self>;
    }

    impl Handler<Launch> for Scripted {
        type Result = ();
        fn handle(&mut self, _: Launch, _: &mut Context<Self>) {
            self.generation += 1;
            self.note(format!("launch {}", self.generation));
            self.link.up.do_send(BrowserUp {
                index: self.index,
                generation: self.generation,
                pid: 1000 + self.index as u32,
            });
        }
    }

    impl Handler<RunCapture> for Scripted {
        type Result = ();
        fn handle(&mut self, mut msg: RunCapture, _: &mut Context<Self>) {
            self.note(format!("run {}", msg.job.id));
            let Some(outcome) = self.outcome else {
                self.held.push(msg.job);
                return;
            };
            msg.job
                .finish(Err(CaptureError::Internal("scripted".into())));
            self.link.slot_freed.do_send(SlotFreed {
                index: self.index,
                generation: msg.generation,
                outcome,
                busy: Duration::from_millis(10),
            });
        }
    }

    impl Handler<Restart> for Scripted {
        type Result = ();
        fn handle(&mut self, Restart(reason): Restart, _: &mut Context<Self>) {
            self.note(format!("restart {}", reason.as_str()));
            self.link.down.do_send(BrowserDown {
                index: self.index,
                generation: self.generation,
                reason,
            });
        }
    }

    impl Handler<Kill> for Scripted {
        type Result = ();
        fn handle(&mut self, _: Kill, _: &mut Context<Self>) {
            self.note("kill".into());
        }
    }

    fn spec() -> CaptureSpec {
        CaptureSpec {
            url: url::Url::parse("http://example.test/").expect("url"),
            html: None,
            pdf: None,
            format: ImageFormat::Png,
            quality: None,
            width: 800,
            height: 600,
            device_scale_factor: 1.0,
            full_page: false,
            max_full_page_height: 10_000,
            max_output_bytes: 1 << 20,
            selector: None,
            wait_until: WaitUntil::Load,
            wait_for_selector: None,
            delay: Duration::ZERO,
            dark_mode: false,
            hide_selectors: Vec::new(),
            css: None,
            js: None,
            user_agent: None,
            headers: Vec::new(),
            cookies: Vec::new(),
            omit_background: false,
            scroll_to_load: false,
            allow_http_errors: false,
            mobile: false,
            touch: false,
            timezone: None,
            locale: None,
            geolocation: None,
            reduced_motion: false,
            media: None,
            click: Vec::new(),
            scroll_to: None,
            wait_for_function: None,
            clip: None,
            page_info: false,
            block_resources: Vec::new(),
            block_urls: Vec::new(),
            filters: Default::default(),
        }
    }

    /// A supervisor of scripted browsers, and the log of what they were asked.
    fn farm(farm: FarmConfig, outcome: Option<SlotOutcome>) -> (Addr<Supervisor>, Log) {
        let log: Log = Arc::default();
        let browsers_log = log.clone();
        let start: StartBrowser = Box::new(move |index, link| {
            let browser = Scripted {
                index,
                link,
                log: browsers_log.clone(),
                generation: 0,
                outcome,
                held: Vec::new(),
            }
            .start();
            BrowserHandle::of(&browser)
        });
        let supervisor = Supervisor::new(
            farm,
            1,
            start,
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Metrics::new()),
        )
        .start();
        (supervisor, log)
    }

    async fn submit(supervisor: &Addr<Supervisor>, id: &str) {
        let (job, answer) = Job::new(id.into(), spec(), Instant::now() + Duration::from_secs(5));
        let queued = supervisor.send(Submit(job)).await.expect("mailbox");
        assert!(queued.is_ok(), "{id} queued: {queued:?}");
        // A held capture never answers; the others answer at once.
        let _ = tokio::time::timeout(Duration::from_millis(200), answer).await;
    }

    async fn ready(supervisor: &Addr<Supervisor>, browsers: usize) {
        for _ in 0..100 {
            if supervisor.send(GetStatus).await.expect("mailbox").ready == browsers {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{browsers} scripted browsers never came up");
    }

    fn lines(log: &Log) -> Vec<String> {
        log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    #[actix_rt::test]
    async fn a_browser_is_recycled_after_recycle_after_captures_without_back_off() {
        let config = FarmConfig {
            browsers: 1,
            recycle_after: 2,
            ..FarmConfig::default()
        };
        let (supervisor, log) = farm(config, Some(SlotOutcome::Success));
        ready(&supervisor, 1).await;
        submit(&supervisor, "j1").await;
        assert!(!lines(&log).iter().any(|l| l.contains("restart")));
        submit(&supervisor, "j2").await;
        ready(&supervisor, 1).await;
        assert_eq!(
            lines(&log),
            [
                "b0 launch 1",
                "b0 run j1",
                "b0 run j2",
                "b0 restart recycled",
                "b0 launch 2"
            ]
        );
    }

    #[actix_rt::test]
    async fn overruns_up_to_max_overruns_restart_the_browser_page_errors_do_not() {
        let config = FarmConfig {
            browsers: 1,
            max_overruns: 2,
            ..FarmConfig::default()
        };
        let (supervisor, log) = farm(config.clone(), Some(SlotOutcome::PageError));
        ready(&supervisor, 1).await;
        for id in ["p1", "p2", "p3"] {
            submit(&supervisor, id).await;
        }
        assert!(
            !lines(&log).iter().any(|l| l.contains("restart")),
            "page errors are the page's: {:?}",
            lines(&log)
        );

        let (supervisor, log) = farm(config, Some(SlotOutcome::Overrun));
        ready(&supervisor, 1).await;
        submit(&supervisor, "o1").await;
        assert!(!lines(&log).iter().any(|l| l.contains("restart")));
        submit(&supervisor, "o2").await;
        ready(&supervisor, 1).await;
        let log = lines(&log);
        assert!(
            log.contains(&"b0 restart deadline_overrun".to_string()),
            "{log:?}"
        );
    }

    #[actix_rt::test]
    async fn jobs_go_to_a_browser_with_a_free_tab_and_wait_when_none_has_one() {
        let config = FarmConfig {
            browsers: 2,
            ..FarmConfig::default()
        };
        let (supervisor, log) = farm(config, None);
        ready(&supervisor, 2).await;
        for id in ["h1", "h2", "h3"] {
            submit(&supervisor, id).await;
        }
        let runs: Vec<(String, String)> = lines(&log)
            .into_iter()
            .filter_map(|l| {
                let (browser, job) = l.split_once(" run ")?;
                Some((browser.to_string(), job.to_string()))
            })
            .collect();
        let browsers: BTreeSet<&str> = runs.iter().map(|(b, _)| b.as_str()).collect();
        let jobs: BTreeSet<&str> = runs.iter().map(|(_, j)| j.as_str()).collect();
        assert_eq!(runs.len(), 2, "one job per free tab: {runs:?}");
        assert_eq!(browsers, BTreeSet::from(["b0", "b1"]), "{runs:?}");
        assert_eq!(
            jobs,
            BTreeSet::from(["h1", "h2"]),
            "first come, first served"
        );
        let status = supervisor.send(GetStatus).await.expect("mailbox");
        assert_eq!(status.queue_depth, 1, "the third waits for a tab");
    }
}
