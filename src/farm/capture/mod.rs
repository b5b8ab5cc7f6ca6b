//! One capture on a prepared tab: emulation, navigation and its waits, page tweaks, and the
//! screenshot itself (viewport, element, or full page, tiled when taller than Chromium paints in
//! one go) or the page printed to PDF. Every CDP call here is bounded by the caller's deadline; this module knows nothing of
//! queues, browsers' lifecycles or HTTP.

mod blocking;
mod emulate;
mod finish;
mod navigate;
mod page_js;
mod page_moves;
mod prepare;
mod print;
mod region;
mod shoot;
mod tiles;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::error::CdpError;
use chromiumoxide::Page;

use super::job::{CaptureError, CaptureSpec, PageInfo, Phases};
use crate::config::PngEncoder;
use crate::content_filters::ContentFilters;
use emulate::emulate;
use navigate::{ensure_not_error_page, ensure_worth_capturing, main_frame, navigate};
use page_moves::{navigated_away, PageMoves};
use prepare::prepare_page;
use shoot::shoot;

/// Settings of the farm that shape every capture.
#[derive(Debug, Clone, Copy)]
pub struct CaptureSettings {
    pub png_encoder: PngEncoder,
    /// Tallest strip painted at once, device pixels.
    pub max_tile_height: u32,
    /// How long `selector` waits for its element.
    pub element_wait: Duration,
    /// The viewport spare tabs are prepared with (the configured default size, scale 1).
    pub default_viewport: (u32, u32),
}

/// How long the document's state is awaited before the capture checks whether the page moved
/// under the read (an answer normally takes a millisecond or two).
const DOCUMENT_READ_GRACE: Duration = Duration::from_secs(2);

/// Time kept back from `wait_for_selector` to answer `selector_not_found` before the deadline.
const SELECTOR_REPORT_RESERVE: Duration = Duration::from_millis(300);

/// An image straight from a capture.
pub struct Rendered {
    pub image: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub truncated: bool,
    /// Where the time went (`context` is the caller's to fill).
    pub phases: Phases,
    /// What the page said about itself, when asked.
    pub page: Option<PageInfo>,
}

/// How a capture failed inside the page.
#[derive(Debug)]
pub enum Failure {
    /// A user-facing outcome (navigation error, missing selector, script error …).
    Capture(CaptureError),
    /// The DevTools connection failed: the caller decides whether the browser died.
    Cdp(CdpError),
}

impl From<CdpError> for Failure {
    fn from(e: CdpError) -> Self {
        Failure::Cdp(e)
    }
}

impl From<CaptureError> for Failure {
    fn from(e: CaptureError) -> Self {
        Failure::Capture(e)
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// What a capture is waiting for, so a deadline that passes can be blamed on the right party.
#[derive(Debug, Default)]
pub struct Progress(AtomicBool);

impl Progress {
    /// True while the capture waits on the page's own content (its loading, its scripts, the
    /// selector it should show, the asked-for delay); false while it waits on the browser
    /// (emulation, painting the screenshot).
    pub fn waiting_on_page(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, on_page: bool) {
        self.0.store(on_page, Ordering::Relaxed);
    }
}

/// Runs the capture. The caller bounds it with the job's deadline; `filters` are the daemon's
/// filter engines, for a capture that applies filter lists.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    page: &Page,
    context: &BrowserContextId,
    preset: Option<(u32, u32)>,
    spec: &CaptureSpec,
    settings: CaptureSettings,
    filters: &ContentFilters,
    deadline: tokio::time::Instant,
    progress: &Progress,
) -> Result<Rendered> {
    let start = std::time::Instant::now();
    // The filter engines, when the capture applies lists: built at start, so a capture that
    // comes first waits for them. Not the browser's doing: a deadline passing here is a plain
    // timeout, never held against the browser.
    let lists = match spec.filters.any() {
        true => {
            progress.set(true);
            let engines = filters.ready().await;
            progress.set(false);
            Some(engines)
        }
        false => None,
    };
    emulate(page, context, preset, spec).await?;
    let main = main_frame(page).await?;
    blocking::block_requests(page, spec, lists.clone(), &main, deadline).await?;
    let emulated = start.elapsed();
    progress.set(true);
    // The page may navigate itself (a script, a refresh, even before it finished loading):
    // watch for it, so the capture is of where it went and never races a document being
    // replaced. `Page.navigate` itself is not renderer-initiated, so it asks for nothing here.
    let mut moves = PageMoves::watch(page).await?;
    navigate(page, spec, &main).await?;
    // An error page is found by the document read below; before the page's options run on it
    // (a selector waited for on an error page would blame the selector), it is looked for here.
    if prepare::has_work(spec) {
        ensure_not_error_page(page).await?;
    }
    moves.forget_first_document();
    let navigated = start.elapsed();
    prepare_page(page, spec, lists.as_deref(), &main, deadline, &mut moves).await?;
    if !spec.delay.is_zero() {
        tokio::time::sleep(spec.delay).await;
    }
    moves.settle_if_moved(page, spec, &main).await?;
    // The document the shot will show: an HTTP error or an empty page is a free failure. The
    // page may move on while it is read (a meta refresh, a timer), and a read sent to a document
    // being replaced can go unanswered: when no answer comes soon, or the document went away,
    // the move is waited out and checked for an error page, and the new document is read.
    let read = tokio::time::timeout(DOCUMENT_READ_GRACE, ensure_worth_capturing(page, spec)).await;
    let info = match read {
        Ok(Err(Failure::Cdp(e))) if navigated_away(&e) => None,
        Ok(read) => Some(read?),
        Err(_) => None,
    };
    let info = match info {
        Some(info) => info,
        None => {
            moves.settle_if_moved(page, spec, &main).await?;
            ensure_not_error_page(page).await?;
            ensure_worth_capturing(page, spec).await?
        }
    };
    let prepared = start.elapsed();
    progress.set(false);
    let output = async {
        match &spec.pdf {
            Some(pdf) => print::print(page, pdf).await,
            None => shoot(page, spec, settings, deadline).await,
        }
    };
    let mut rendered = match output.await {
        // A page that navigated under the shot (to an error page, say) is the page's doing.
        Err(Failure::Cdp(e)) => {
            ensure_not_error_page(page).await?;
            return Err(Failure::Cdp(e));
        }
        other => other?,
    };
    // A refresh or a script may have moved the page on to an error page meanwhile (a move
    // the page makes is announced before its new document can paint).
    if moves.moved(&main) {
        ensure_not_error_page(page).await?;
    }
    let shot = start.elapsed() - prepared;
    rendered.phases = Phases {
        context: Duration::ZERO,
        emulate: emulated,
        navigate: navigated - emulated,
        page: prepared - navigated,
        capture: shot.saturating_sub(rendered.phases.encode),
        encode: rendered.phases.encode,
    };
    rendered.page = info;
    Ok(rendered)
}
