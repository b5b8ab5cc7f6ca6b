//! Navigation: `Page.navigate` and the wait for the main frame's document, read from its
//! lifecycle events; the checks that the page did not end on an error page.

use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::network::LoaderId;
use chromiumoxide::cdp::browser_protocol::page::{
    EventLifecycleEvent, FrameId, GetFrameTreeParams, NavigateParams,
};
use chromiumoxide::error::CdpError;
use chromiumoxide::Page;
use futures::StreamExt;

use super::page_js::evaluate;
use super::{Failure, Result};
use crate::farm::job::{CaptureError, CaptureSpec, PageInfo, WaitUntil};

/// The lifecycle event a capture waits for.
fn wanted_event(spec: &CaptureSpec) -> &'static str {
    match spec.wait_until {
        WaitUntil::Load => "load",
        WaitUntil::DomContentLoaded => "DOMContentLoaded",
        WaitUntil::NetworkIdle => "networkIdle",
    }
}

/// The page's main frame (a page target's main frame has the target's id).
pub(super) async fn main_frame(page: &Page) -> Result<FrameId> {
    Ok(page
        .mainframe()
        .await?
        .unwrap_or_else(|| FrameId::new(page.target_id().inner().clone())))
}

/// Navigates the main frame and waits for its document's lifecycle event.
///
/// chromiumoxide answers `Page.navigate` only once every frame of the page has loaded, so a
/// frame that can never load (`file://`, `chrome://`, `view-source:` in an iframe) would hold
/// the capture until its timeout. The main frame's own lifecycle decides here; chromiumoxide's
/// answer is used when it comes first (it carries the error text and the download flag).
pub(super) async fn navigate(page: &Page, spec: &CaptureSpec, main: &FrameId) -> Result<()> {
    // Subscribe before navigating so no lifecycle event can be missed.
    let mut lifecycle = page.event_listener::<EventLifecycleEvent>().await?;
    let answer = page.execute(NavigateParams::new(spec.url.to_string()));
    tokio::pin!(answer);
    let mut answered = false;
    // The main frame's newest document, and the documents that reached the wanted event.
    let mut newest = NewestDocument::new(spec, main);
    let mut reached: Vec<LoaderId> = Vec::new();
    loop {
        tokio::select! {
            nav = &mut answer, if !answered => {
                answered = true;
                let Some(loader) = check_answer(nav?.result)? else {
                    return Ok(());
                };
                // The answer comes once every frame has loaded: enough unless the wait is for
                // network idle, which must still be seen for the newest document.
                if newest.wanted != "networkIdle" || reached.contains(&loader) {
                    return Ok(());
                }
                newest.document.get_or_insert(loader);
            }
            event = lifecycle.next() => match newest.read(event)? {
                Lifecycle::Reached => {
                    // chromiumoxide's answer, when it is about to come (it does once the
                    // page has no frame left loading), says why a navigation failed.
                    if !answered {
                        if let Ok(nav) = tokio::time::timeout(ANSWER_GRACE, &mut answer).await {
                            check_answer(nav?.result)?;
                        }
                    }
                    return Ok(());
                }
                Lifecycle::ReachedOlder(loader) => reached.push(loader),
                Lifecycle::Other => {}
            },
        }
    }
}

/// What one lifecycle event means to a wait for the main frame's newest document.
pub(super) enum Lifecycle {
    /// The newest document reached the wanted event.
    Reached,
    /// An older document of the main frame reached it (this one).
    ReachedOlder(LoaderId),
    /// Anything else: another frame, another event, a new document (now the newest).
    Other,
}

/// Follows the main frame's newest document through its lifecycle events: each `init` is a new
/// document in the main frame (the one navigated to, or one the page moved on to), and the
/// newest is the one to wait for.
pub(super) struct NewestDocument<'a> {
    main: &'a FrameId,
    /// The lifecycle event the capture waits for.
    pub(super) wanted: &'static str,
    /// The main frame's newest document, once known.
    pub(super) document: Option<LoaderId>,
}

impl<'a> NewestDocument<'a> {
    pub(super) fn new(spec: &CaptureSpec, main: &'a FrameId) -> NewestDocument<'a> {
        NewestDocument {
            main,
            wanted: wanted_event(spec),
            document: None,
        }
    }

    /// Reads the next lifecycle event; the events ending (`None`) is the DevTools connection
    /// failing.
    pub(super) fn read(&mut self, event: Option<Arc<EventLifecycleEvent>>) -> Result<Lifecycle> {
        let Some(event) = event else {
            return Err(Failure::Cdp(CdpError::NoResponse));
        };
        if event.frame_id != *self.main {
            return Ok(Lifecycle::Other);
        }
        if event.name == "init" {
            self.document = Some(event.loader_id.clone());
        } else if event.name == self.wanted {
            if self.document.as_ref() == Some(&event.loader_id) {
                return Ok(Lifecycle::Reached);
            }
            return Ok(Lifecycle::ReachedOlder(event.loader_id.clone()));
        }
        Ok(Lifecycle::Other)
    }
}

/// How long a navigation whose main frame has loaded waits for chromiumoxide's answer, which
/// carries the error text of a failed navigation.
const ANSWER_GRACE: Duration = Duration::from_millis(50);

/// The checks on `Page.navigate`'s answer: a navigation error, a download. Returns the new
/// document's loader (`None` for a same-document navigation).
fn check_answer(
    nav: chromiumoxide::cdp::browser_protocol::page::NavigateReturns,
) -> Result<Option<LoaderId>> {
    if let Some(error) = nav.error_text.filter(|e| !e.is_empty()) {
        return Err(CaptureError::NavigationFailed(error).into());
    }
    if nav.is_download == Some(true) {
        return Err(
            CaptureError::NavigationFailed("the URL is a download, not a page".into()).into(),
        );
    }
    Ok(nav.loader_id)
}

/// Fails when the main frame shows Chromium's error page instead of a document: the page (or a
/// refresh, or its script) navigated somewhere that could not be loaded — refused by the
/// egress policy or unreachable. Never captured, never charged.
pub(super) async fn ensure_not_error_page(page: &Page) -> Result<()> {
    let tree = page.execute(GetFrameTreeParams::default()).await?.result;
    let frame = tree.frame_tree.frame;
    if let Some(unreachable) = frame.unreachable_url.filter(|u| !u.is_empty()) {
        return Err(CaptureError::NavigationFailed(format!(
            "{unreachable} could not be loaded (refused by the egress policy, or unreachable); the page showed an error page instead"
        ))
        .into());
    }
    if frame.url.starts_with("chrome-error:") {
        return Err(CaptureError::NavigationFailed(
            "the page ended on an error page (a navigation refused by the egress policy or unreachable)".into(),
        )
        .into());
    }
    Ok(())
}

/// What the main document's navigation entry says (its HTTP status and body size), whether
/// the document holds anything at all, and whether it is Chromium's error page; with `INFO`,
/// also its title, URL and Open Graph / Twitter card metadata. One evaluation, read by value.
fn document_state(info: bool) -> String {
    format!(
        r#"(() => {{
  const n = performance.getEntriesByType('navigation')[0];
  const b = document.body;
  const state = [n ? n.responseStatus || 0 : 0, n ? n.decodedBodySize : -1,
                 (b ? b.childNodes.length : 0) + (document.head ? document.head.childNodes.length : 0),
                 location.protocol === 'chrome-error:'];
  if (!{info}) return state;
  const cut = (s) => String(s || '').slice(0, {max});
  const meta = {{}};
  for (const m of document.querySelectorAll('meta[property^="og:"], meta[name^="og:"], meta[name^="twitter:"], meta[property^="twitter:"]')) {{
    const key = cut(m.getAttribute('property') || m.getAttribute('name'));
    if (!(key in meta) && Object.keys(meta).length < {entries}) meta[key] = cut(m.getAttribute('content'));
  }}
  return state.concat([cut(document.title), cut(location.href), meta]);
}})()"#,
        max = MAX_INFO_CHARS,
        entries = MAX_META_ENTRIES,
    )
}

/// Longest title, URL or metadata value reported, in characters.
const MAX_INFO_CHARS: usize = 2048;
/// Most metadata entries reported.
const MAX_META_ENTRIES: usize = 64;

/// Fails a page that is not worth a credit: its main document answered with an HTTP error
/// (≥ 400; `target_http_error`, unless `allow_http_errors`), or with an empty 2xx document
/// that shows nothing (`empty_page`). Both are free, like every failure. Returns what the page
/// said about itself when the capture asked for it.
pub(super) async fn ensure_worth_capturing(
    page: &Page,
    spec: &CaptureSpec,
) -> Result<Option<PageInfo>> {
    let state = evaluate(page, document_state(spec.page_info), false).await?;
    if state.get(3) == Some(&serde_json::Value::Bool(true)) {
        // Chromium's error page: the frame tree says which address could not be loaded.
        ensure_not_error_page(page).await?;
        return Err(CaptureError::NavigationFailed(
            "the page ended on an error page (refused by the egress policy, or unreachable)".into(),
        )
        .into());
    }
    let number = |i: usize| state.get(i).and_then(serde_json::Value::as_i64);
    let status = number(0).unwrap_or(0);
    if status >= 400 && !spec.allow_http_errors {
        let status = u16::try_from(status).unwrap_or(u16::MAX);
        return Err(CaptureError::TargetHttpError(status).into());
    }
    let empty_body = number(1) == Some(0);
    let no_nodes = number(2) == Some(0);
    // Supplied markup always has a body (it is not blank): the document holding nothing
    // (`<html></html>`) is what makes it empty.
    let empty = no_nodes && (empty_body || spec.html.is_some());
    if (200..300).contains(&status) && empty {
        return Err(CaptureError::EmptyPage.into());
    }
    if !spec.page_info {
        return Ok(None);
    }
    let text = |i: usize| {
        state
            .get(i)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let meta = state
        .get(6)
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(PageInfo {
        title: text(4),
        url: text(5),
        status: u16::try_from(status).unwrap_or(0),
        meta,
    }))
}
