//! Request blocking: `block_resources` (by type) and `block_urls` (by pattern). Matching
//! requests are paused by Chromium's Fetch domain and failed as blocked by the client, on a task
//! that lives as long as the page; requests that match nothing are never paused.

use chromiumoxide::cdp::browser_protocol::fetch::{
    EnableParams as FetchEnableParams, EventRequestPaused, FailRequestParams, RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::Page;
use futures::StreamExt;

use super::Result;
use crate::farm::job::{CaptureSpec, ResourceKind};

/// The CDP resource type of a blockable kind.
fn resource_type(kind: ResourceKind) -> ResourceType {
    match kind {
        ResourceKind::Stylesheet => ResourceType::Stylesheet,
        ResourceKind::Image => ResourceType::Image,
        ResourceKind::Media => ResourceType::Media,
        ResourceKind::Font => ResourceType::Font,
        ResourceKind::Script => ResourceType::Script,
        ResourceKind::Xhr => ResourceType::Xhr,
        ResourceKind::Fetch => ResourceType::Fetch,
        ResourceKind::EventSource => ResourceType::EventSource,
        ResourceKind::Other => ResourceType::Other,
    }
}

/// Starts blocking what the capture asks to block; nothing when it asks for nothing. The
/// blocking task ends with the page, and at the latest at the capture's deadline.
pub(super) async fn block_requests(
    page: &Page,
    spec: &CaptureSpec,
    deadline: tokio::time::Instant,
) -> Result<()> {
    if spec.block_resources.is_empty() && spec.block_urls.is_empty() {
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
    // Listening first, so no paused request is missed.
    let mut paused = page.event_listener::<EventRequestPaused>().await?;
    let failing = page.clone();
    tokio::spawn(tokio::time::timeout_at(deadline, async move {
        while let Some(event) = paused.next().await {
            let fail =
                FailRequestParams::new(event.request_id.clone(), ErrorReason::BlockedByClient);
            if failing.execute(fail).await.is_err() {
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
