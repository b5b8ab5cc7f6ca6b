//! One capture on a tokio task: it owns its job until the job is answered, races the page work
//! against the deadline and the browser's death, disposes the context, and reports the outcome
//! to its browser (`CaptureDone`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::Browser;
use futures::StreamExt;
use tokio::sync::watch;

use super::{BrowserActor, CaptureDone};
use crate::content_filters::ContentFilters;
use crate::farm::capture::{self, CaptureSettings, Failure};
use crate::farm::job::{CaptureError, CaptureOutput, Job, Timings};
use crate::farm::messages::*;
use crate::farm::tab::{self, PreparedTab, TabError};
use crate::telemetry::Metrics;

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
pub(super) struct CaptureTask {
    pub(super) index: usize,
    pub(super) generation: u64,
    pub(super) tab: Option<PreparedTab>,
    pub(super) browser: Arc<Browser>,
    pub(super) dead: watch::Receiver<Option<RestartReason>>,
    pub(super) settings: CaptureSettings,
    pub(super) filters: ContentFilters,
    pub(super) metrics: Arc<Metrics>,
    pub(super) supervisor: SupervisorLink,
    pub(super) browser_addr: Addr<BrowserActor>,
    pub(super) farm_in_flight: Arc<AtomicUsize>,
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
    pub(super) async fn run(mut self, job: Job) {
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
        let work = capture::run(
            &tab.page,
            &tab.context_id,
            tab.viewport,
            &spec,
            self.settings,
            &self.filters,
            deadline,
            &progress,
        );
        let ended = tokio::select! {
            result = tokio::time::timeout_at(deadline, work) => match result {
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
                    page: rendered.page,
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
