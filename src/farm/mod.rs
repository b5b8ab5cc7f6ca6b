//! The capture farm: a supervisor actor over a fleet of browser actors, each owning one Chromium.
//! Only this module knows chromiumoxide. The API talks to it through [`Farm`] (an address and
//! message types), never through actor structs.
//!
//! - [`job`]: what a capture is (validated spec, deadline, reply) and its outcomes.
//! - [`messages`]: everything the actors say to each other and to the API.
//! - [`supervisor`]: queue, dispatch, deadlines, restart policy.
//! - [`browser`]: one Chromium's lifecycle, its spare tabs, captures on tokio tasks.
//! - [`process`]: launching and killing Chromium processes (parent-death signal, process groups).
//! - [`tab`]: the fresh browser context each capture runs in.
//! - [`capture`]: the CDP steps of one capture.
//! - [`encode`]: PNG recompression, tile stitching and encoding in Rust.
//! - [`proc_tree`]: memory of a browser's process tree.

pub(crate) mod browser;
pub(crate) mod capture;
pub mod encode;
pub mod job;
pub(crate) mod messages;
pub mod proc_tree;
pub mod process;
pub(crate) mod supervisor;
pub mod tab;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::config::Config;
use crate::content_filters::ContentFilters;
use crate::telemetry::Metrics;
use browser::{BrowserActor, BrowserSettings};
use capture::CaptureSettings;
pub use job::{
    CaptureError, CaptureOutput, CaptureResult, CaptureSpec, ImageFormat, Job, PageInfo,
};
pub use messages::FarmStatus;
pub use process::Placement;
use supervisor::Supervisor;

/// Extra time a caller gives the farm past the job's deadline to deliver its own answer.
pub const ANSWER_SLACK: Duration = Duration::from_millis(500);

/// The handle the rest of the daemon holds: a cloneable address of the supervisor.
#[derive(Clone)]
pub struct Farm {
    supervisor: Addr<Supervisor>,
}

impl Farm {
    /// Starts the supervisor (and through it every browser) on the current actix system.
    /// `network_flags` are Chromium flags that route its traffic (the egress proxy's);
    /// `placement` says where browsers run (their network namespace, the sandbox).
    pub fn start(
        config: &Config,
        metrics: Arc<Metrics>,
        network_flags: Vec<String>,
        placement: Placement,
        filters: ContentFilters,
    ) -> Farm {
        let mut chromium = config.browser();
        chromium.extra_args.extend(network_flags);
        let settings = BrowserSettings {
            chromium,
            placement,
            tabs: config.farm.tabs_per_browser,
            capture: CaptureSettings {
                png_encoder: config.capture.png_encoder,
                max_tile_height: config.capture.max_tile_height,
                element_wait: Duration::from_millis(config.capture.element_wait_ms),
                default_viewport: (config.capture.default_width, config.capture.default_height),
            },
            filters,
            probe_interval: Duration::from_millis(config.farm.probe_interval_ms),
            probe_timeout: Duration::from_millis(config.farm.probe_timeout_ms),
            request_timeout: Duration::from_millis(config.capture.max_timeout_ms)
                .max(Duration::from_secs(30)),
        };
        let chromium = config.chromium.clone();
        tokio::task::spawn_blocking(move || {
            let removed = process::remove_stale_profiles(&chromium);
            if removed > 0 {
                tracing::info!(removed, "removed profile directories of dead browsers");
            }
        });
        // The farm's series exist, at zero, before their first event (a fresh daemon's first
        // scrape has what the dashboard and the alert rules query).
        for format in ImageFormat::ALL {
            metrics.render_seconds.with_label_values(&[format.as_str()]);
        }
        for index in 0..config.farm.browsers {
            // Each browser's memory, 0 until its first probe (the browser actor's own label).
            metrics
                .browser_memory_bytes
                .with_label_values(&[&index.to_string()])
                .set(0);
        }
        let tabs = settings.tabs;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let browsers_in_flight = in_flight.clone();
        let browser_metrics = metrics.clone();
        let start_browser: messages::StartBrowser = Box::new(move |index, link| {
            let browser = BrowserActor::new(
                index,
                settings.clone(),
                link,
                browser_metrics.clone(),
                browsers_in_flight.clone(),
            )
            .start();
            messages::BrowserHandle::of(&browser)
        });
        let supervisor =
            Supervisor::new(config.farm.clone(), tabs, start_browser, in_flight, metrics).start();
        Farm { supervisor }
    }

    /// Queues a job; its result arrives on the receiver returned by [`Job::new`].
    pub async fn submit(&self, job: Job) -> Result<(), CaptureError> {
        self.supervisor
            .send(messages::Submit(job))
            .await
            .unwrap_or(Err(CaptureError::ShuttingDown))
    }

    /// Queues `spec` as job `id`, waits for the farm's answer (until `deadline` plus
    /// [`ANSWER_SLACK`]) and reports the outcome (`CaptureSucceeded` / `CaptureFailed`): one
    /// capture, as the synchronous route and the async workers both run it.
    pub async fn capture(
        &self,
        metrics: &Metrics,
        id: &str,
        spec: CaptureSpec,
        deadline: std::time::Instant,
    ) -> Result<CaptureOutput, CaptureError> {
        use crate::telemetry::events::{CaptureFailed, CaptureSucceeded, InternalEvent};
        let (job, answer) = Job::new(id.to_string(), spec, deadline);
        let outcome = match self.submit(job).await {
            Ok(()) => match tokio::time::timeout_at((deadline + ANSWER_SLACK).into(), answer).await
            {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(CaptureError::Internal("the farm dropped the job".into())),
                Err(_) => Err(CaptureError::Timeout),
            },
            Err(e) => Err(e),
        };
        match &outcome {
            Ok(output) => CaptureSucceeded {
                format: output.format.as_str(),
                bytes: output.image.len(),
                queue: output.timings.queue,
                render: output.timings.render,
                navigate: output.timings.phases.navigate,
                capture: output.timings.phases.capture,
                encode: output.timings.phases.encode,
            }
            .emit(metrics),
            Err(error) => CaptureFailed {
                code: error.code(),
                internal: matches!(error, CaptureError::Internal(_)),
                error,
            }
            .emit(metrics),
        }
        outcome
    }

    pub async fn status(&self) -> FarmStatus {
        self.supervisor
            .send(messages::GetStatus)
            .await
            .unwrap_or_default()
    }

    /// Stops accepting, drains for up to `grace`, then closes every browser.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.supervisor.send(messages::Shutdown { grace }).await;
    }
}
