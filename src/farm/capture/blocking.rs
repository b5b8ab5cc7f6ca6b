//! Requests the capture answers itself: `block_resources` (by type) and `block_urls` (by
//! pattern), and an `html` capture's own document. Matching requests are paused by Chromium's
//! Fetch domain, on a task that lives as long as the page: blocked ones are failed as blocked by
//! the client; the main frame's request for [`HTML_DOCUMENT_URL`] is answered with the markup,
//! and any other request to that origin is failed (none of them ever leaves the browser).
//! Requests that match nothing are never paused.

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::fetch::{
    EnableParams as FetchEnableParams, EventRequestPaused, FailRequestParams, FulfillRequestParams,
    HeaderEntry, RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::FrameId;
use chromiumoxide::Page;
use futures::StreamExt;

use super::Result;
use crate::farm::job::{CaptureSpec, ResourceKind, HTML_DOCUMENT_URL};

/// The CDP resource type of a blockable kind.
fn resource_type(kind: ResourceKind) -> ResourceType {
    match kind {
        ResourceKind::Stylesheet => ResourceType::Stylesheet,
        ResourceKind::Image => ResourceType::Image,
        ResourceKind::Media => ResourceType::Media,
        ResourceKind::Font => ResourceType::Font,
        ResourceKind::Script => ResourceType::Script,
        ResourceKind::TextTrack => ResourceType::TextTrack,
        ResourceKind::Xhr => ResourceType::Xhr,
        ResourceKind::Fetch => ResourceType::Fetch,
        ResourceKind::EventSource => ResourceType::EventSource,
        ResourceKind::WebSocket => ResourceType::WebSocket,
        ResourceKind::Manifest => ResourceType::Manifest,
        ResourceKind::Other => ResourceType::Other,
    }
}

/// Starts answering what the capture asks to block, and its `html` document; nothing when it
/// asks for neither. The task ends with the page, and at the latest at the capture's deadline.
pub(super) async fn block_requests(
    page: &Page,
    spec: &CaptureSpec,
    main: &FrameId,
    deadline: tokio::time::Instant,
) -> Result<()> {
    if spec.block_resources.is_empty() && spec.block_urls.is_empty() && spec.html.is_none() {
        return Ok(());
    }
    let mut patterns: Vec<RequestPattern> = spec
        .block_resources
        .iter()
        .map(|&kind| RequestPattern {
            url_pattern: Some("*".into()),
            resource_type: Some(resource_type(kind)),
            request_stage: None,
        })
        .collect();
    patterns.extend(spec.block_urls.iter().map(|pattern| RequestPattern {
        url_pattern: Some(pattern.clone()),
        resource_type: None,
        request_stage: None,
    }));
    // The html document's origin, every request to it (placed first: a request that matches
    // several patterns is paused once).
    let html = spec.html.as_ref().map(|markup| {
        patterns.insert(
            0,
            RequestPattern {
                url_pattern: Some(format!("{HTML_DOCUMENT_URL}*")),
                resource_type: None,
                request_stage: None,
            },
        );
        base64::engine::general_purpose::STANDARD.encode(markup.as_bytes())
    });
    // Listening first, so no paused request is missed.
    let mut paused = page.event_listener::<EventRequestPaused>().await?;
    let answering = page.clone();
    let main = main.clone();
    tokio::spawn(tokio::time::timeout_at(deadline, async move {
        while let Some(event) = paused.next().await {
            let answered = match &html {
                Some(body) if is_html_document(&event, &main) => answering
                    .execute(html_response(&event, body))
                    .await
                    .map(drop),
                _ => answering
                    .execute(FailRequestParams::new(
                        event.request_id.clone(),
                        ErrorReason::BlockedByClient,
                    ))
                    .await
                    .map(drop),
            };
            if answered.is_err() {
                // The page is gone (the capture ended): so is every request it made.
                break;
            }
        }
    }));
    page.execute(FetchEnableParams {
        patterns: Some(patterns),
        handle_auth_requests: None,
    })
    .await?;
    Ok(())
}

/// The main frame's request for the html capture's document (a reload of it too).
fn is_html_document(event: &EventRequestPaused, main: &FrameId) -> bool {
    event.resource_type == ResourceType::Document
        && event.frame_id == *main
        && event.request.url == HTML_DOCUMENT_URL
}

/// The markup as a 200 `text/html` answer (UTF-8 unless the markup declares otherwise).
fn html_response(event: &EventRequestPaused, body: &str) -> FulfillRequestParams {
    let mut answer = FulfillRequestParams::new(event.request_id.clone(), 200);
    answer.response_headers = Some(vec![
        HeaderEntry::new("Content-Type", "text/html; charset=utf-8"),
        HeaderEntry::new("Cache-Control", "no-store"),
    ]);
    answer.body = Some(body.to_string().into());
    answer
}
