//! Messages between the API, the supervisor and the browser actors. Routes hold only an
//! `Addr<Supervisor>` and speak in these types. The supervisor and the browsers know each other
//! only through [`BrowserHandle`] and [`SupervisorLink`] (recipients of these messages), never by
//! their concrete actor types: the supervisor knows policy, a browser knows Chromium.

use actix::prelude::*;

use super::job::{CaptureError, Job};

/// Why a browser was (or is being) restarted: the `reason` label of
/// `shotfarm_browser_restarts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    ProcessExited,
    CdpDisconnected,
    Unresponsive,
    DeadlineOverrun,
    Recycled,
    MemoryLimit,
    LaunchFailed,
}

impl crate::telemetry::events::Label for RestartReason {
    const ALL: &'static [RestartReason] = &RestartReason::ALL;

    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl RestartReason {
    pub const ALL: [RestartReason; 7] = [
        RestartReason::ProcessExited,
        RestartReason::CdpDisconnected,
        RestartReason::Unresponsive,
        RestartReason::DeadlineOverrun,
        RestartReason::Recycled,
        RestartReason::MemoryLimit,
        RestartReason::LaunchFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::ProcessExited => "process_exited",
            RestartReason::CdpDisconnected => "cdp_disconnected",
            RestartReason::Unresponsive => "unresponsive",
            RestartReason::DeadlineOverrun => "deadline_overrun",
            RestartReason::Recycled => "recycled",
            RestartReason::MemoryLimit => "memory_limit",
            RestartReason::LaunchFailed => "launch_failed",
        }
    }

    /// Planned restarts (policy decisions) are not failures and get no back-off.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            RestartReason::ProcessExited
                | RestartReason::CdpDisconnected
                | RestartReason::Unresponsive
                | RestartReason::LaunchFailed
        )
    }
}

// ---- API → supervisor ----

/// Enqueue a capture. Refused at once when the queue is full, the farm is shutting down, no
/// browser can serve, or the job's deadline leaves no time.
#[derive(Message)]
#[rtype(result = "Result<(), CaptureError>")]
pub struct Submit(pub Job);

/// A snapshot of the farm for `/readyz` and tests.
#[derive(Message)]
#[rtype(result = "FarmStatus")]
pub struct GetStatus;

#[derive(Debug, Clone, Default)]
pub struct FarmStatus {
    /// Browsers able to take work now.
    pub ready: usize,
    pub total: usize,
    pub queue_depth: usize,
    pub in_flight: usize,
    /// PIDs of running browser processes.
    pub pids: Vec<u32>,
    pub accepting: bool,
}

/// Graceful shutdown: stop accepting, drain up to `grace`, then close every browser.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub grace: std::time::Duration,
}

// ---- supervisor → browser ----

/// Launch Chromium (no-op if running).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Launch;

/// Run one capture on a free tab of generation `generation`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunCapture {
    pub generation: u64,
    pub job: Job,
}

/// Stop taking work, let in-flight captures finish, then kill the process and report
/// [`BrowserDown`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restart(pub RestartReason);

/// Kill the browser now (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kill;

// ---- browser → supervisor ----

/// A browser is up with fresh tabs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BrowserUp {
    pub index: usize,
    pub generation: u64,
    pub pid: u32,
}

/// A browser's process is gone (or never started).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BrowserDown {
    pub index: usize,
    pub generation: u64,
    pub reason: RestartReason,
}

/// How a capture ended, for the restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOutcome {
    Success,
    /// Failed for a reason of the page's (navigation, selector, script).
    PageError,
    /// Ran past its deadline; its tab was killed.
    Overrun,
}

/// A tab is free again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SlotFreed {
    pub index: usize,
    pub generation: u64,
    pub outcome: SlotOutcome,
    /// How long the tab was busy with the job (capture and clean-up).
    pub busy: std::time::Duration,
}

/// The job's browser (or only its page renderer) died under it: retry once if its deadline
/// allows.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BrowserLost {
    pub index: usize,
    pub generation: u64,
    /// The whole browser died (not only the tab): the retry must go to another browser or to
    /// this one's next generation.
    pub browser_died: bool,
    /// DevTools failed the capture while the browser lived (not a crash).
    pub fault: bool,
    pub job: Job,
}

/// A job given to a browser that could not take it (it was restarting): queue it again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Bounce {
    pub index: usize,
    pub generation: u64,
    pub job: Job,
}

/// Resident memory of a browser's process tree.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemorySample {
    pub index: usize,
    pub generation: u64,
    pub bytes: u64,
}

// ---- the two sides' interfaces ----

/// What the supervisor may ask of one browser.
#[derive(Clone)]
pub struct BrowserHandle {
    pub launch: Recipient<Launch>,
    pub run: Recipient<RunCapture>,
    pub restart: Recipient<Restart>,
    pub kill: Recipient<Kill>,
}

impl BrowserHandle {
    pub fn of<A>(addr: &Addr<A>) -> BrowserHandle
    where
        A: Actor<Context = Context<A>>
            + Handler<Launch>
            + Handler<RunCapture>
            + Handler<Restart>
            + Handler<Kill>,
    {
        BrowserHandle {
            launch: addr.clone().recipient(),
            run: addr.clone().recipient(),
            restart: addr.clone().recipient(),
            kill: addr.clone().recipient(),
        }
    }
}

/// How a browser reports to its supervisor.
#[derive(Clone)]
pub struct SupervisorLink {
    pub up: Recipient<BrowserUp>,
    pub down: Recipient<BrowserDown>,
    pub slot_freed: Recipient<SlotFreed>,
    pub lost: Recipient<BrowserLost>,
    pub bounce: Recipient<Bounce>,
    pub memory: Recipient<MemorySample>,
}

impl SupervisorLink {
    pub fn of<A>(addr: &Addr<A>) -> SupervisorLink
    where
        A: Actor<Context = Context<A>>
            + Handler<BrowserUp>
            + Handler<BrowserDown>
            + Handler<SlotFreed>
            + Handler<BrowserLost>
            + Handler<Bounce>
            + Handler<MemorySample>,
    {
        SupervisorLink {
            up: addr.clone().recipient(),
            down: addr.clone().recipient(),
            slot_freed: addr.clone().recipient(),
            lost: addr.clone().recipient(),
            bounce: addr.clone().recipient(),
            memory: addr.clone().recipient(),
        }
    }
}

/// Starts browser `index`, reporting through the link. The farm starts Chromium browser actors;
/// the supervisor's tests start scripted ones.
pub type StartBrowser = Box<dyn Fn(usize, SupervisorLink) -> BrowserHandle>;
