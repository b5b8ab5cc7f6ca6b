//! Navigations of the page's own making (a script, a refresh): watched from before
//! `Page.navigate`, waited out before the shot.

use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::page::{
    ClientNavigationDisposition, EventFrameRequestedNavigation, EventLifecycleEvent,
    EventNavigatedWithinDocument, FrameId,
};
use chromiumoxide::error::CdpError;
use chromiumoxide::Page;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::navigate::{ensure_not_error_page, Lifecycle, NewestDocument};
use super::Result;
use crate::farm::job::CaptureSpec;

/// Navigations of the page's own making after its first document loaded.
pub(super) struct PageMoves {
    /// `Page.frameRequestedNavigation`: sent by the renderer as a navigation is asked for, so it
    /// is in hand before the answer to the script that asked.
    requested: BoxStream<'static, Arc<EventFrameRequestedNavigation>>,
    pub(super) lifecycle: BoxStream<'static, Arc<EventLifecycleEvent>>,
    /// Same-document navigations (`location.hash = …`): asked for, but no new document comes.
    within: BoxStream<'static, Arc<EventNavigatedWithinDocument>>,
}

/// How long a navigation the page asked for may take to commit a document before the capture
/// goes on without it (one that was cancelled, answered 204, or became a download never does).
const REQUESTED_COMMIT_GRACE: Duration = Duration::from_secs(2);

impl PageMoves {
    pub(super) async fn watch(page: &Page) -> Result<PageMoves> {
        Ok(PageMoves {
            requested: page
                .event_listener::<EventFrameRequestedNavigation>()
                .await?
                .boxed(),
            lifecycle: page.event_listener::<EventLifecycleEvent>().await?.boxed(),
            within: page
                .event_listener::<EventNavigatedWithinDocument>()
                .await?
                .boxed(),
        })
    }

    /// Drops the lifecycle events of the document `Page.navigate` loaded (they are not a move).
    pub(super) fn forget_first_document(&mut self) {
        while let Some(Some(_)) = self.lifecycle.next().now_or_never() {}
        while let Some(Some(_)) = self.within.next().now_or_never() {}
    }

    /// Whether the main frame asked to navigate itself (not a new window, not a download) since
    /// the last call (events already received).
    pub(super) fn main_frame_moved(&mut self, main: &FrameId) -> bool {
        let mut moved = false;
        while let Some(Some(event)) = self.requested.next().now_or_never() {
            moved |= event.frame_id == *main
                && event.disposition == ClientNavigationDisposition::CurrentTab;
        }
        moved
    }

    /// Whether the main frame asked to navigate, or a new document of it began, since the last
    /// call (events already received).
    pub(super) fn moved(&mut self, main: &FrameId) -> bool {
        let mut moved = self.main_frame_moved(main);
        while let Some(Some(event)) = self.lifecycle.next().now_or_never() {
            moved |= event.frame_id == *main && event.name == "init";
        }
        moved
    }

    /// When the main frame asked to navigate, waits for its next document (the caller's
    /// deadline bounds the wait) and fails if that is an error page. A navigation that stays
    /// within the document, or commits nothing within [`REQUESTED_COMMIT_GRACE`], is not waited
    /// for further.
    pub(super) async fn settle_if_moved(
        &mut self,
        page: &Page,
        spec: &CaptureSpec,
        main: &FrameId,
    ) -> Result<()> {
        if !self.main_frame_moved(main) {
            return Ok(());
        }
        let grace = tokio::time::sleep(REQUESTED_COMMIT_GRACE);
        tokio::pin!(grace);
        let mut newest = NewestDocument::new(spec, main);
        // The new document's `init` may have been among the first document's events
        // (`forget_first_document`): the grace then ends the wait, and the error-page check
        // still judges where the page went.
        loop {
            tokio::select! {
                () = &mut grace, if newest.document.is_none() => break,
                Some(event) = self.within.next(), if newest.document.is_none() => {
                    if event.frame_id == *main {
                        break;
                    }
                }
                event = self.lifecycle.next() => {
                    if let Lifecycle::Reached = newest.read(event)? {
                        break;
                    }
                }
            }
        }
        ensure_not_error_page(page).await
    }
}

/// After the page's script navigated it: waits for the main frame's next document to reach the
/// capture's lifecycle event (the caller's deadline bounds the wait).
pub(super) async fn settle_after_navigation(
    lifecycle: &mut (impl futures::Stream<Item = std::sync::Arc<EventLifecycleEvent>> + Unpin),
    spec: &CaptureSpec,
    main: &FrameId,
) -> Result<()> {
    let mut newest = NewestDocument::new(spec, main);
    loop {
        if let Lifecycle::Reached = newest.read(lifecycle.next().await)? {
            return Ok(());
        }
    }
}

/// Whether a DevTools error means the page navigated away under a running script (its
/// execution context went with the old document), as opposed to a fault of the browser.
pub(super) fn navigated_away(error: &CdpError) -> bool {
    match error {
        CdpError::Chrome(e) => {
            let m = e.message.as_str();
            m.contains("Execution context was destroyed")
                || m.contains("Inspected target navigated or closed")
                || m.contains("Cannot find context with specified id")
        }
        _ => false,
    }
}
