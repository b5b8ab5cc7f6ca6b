//! A capture's private tab: a fresh browser context (no cookies, cache or storage shared with any
//! other capture) holding one about:blank page. Tabs are prepared while the browser is idle, so
//! isolation costs nothing on the request path, and disposed (context and page together) after use.

use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams, DisposeBrowserContextParams,
};
use chromiumoxide::{Browser, Page};

/// Longest time preparing or disposing a tab may take before the browser counts as wedged.
pub const TAB_OP_TIMEOUT: Duration = Duration::from_secs(5);

/// A page in its own browser context, ready to navigate.
pub struct PreparedTab {
    pub context_id: BrowserContextId,
    pub page: Page,
    /// The viewport already set on the page (CSS pixels, scale 1), if any.
    pub viewport: Option<(u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TabError {
    #[error("browser did not answer within {0:?}")]
    Timeout(Duration),
    #[error("devtools: {0}")]
    Cdp(#[from] chromiumoxide::error::CdpError),
}

/// Creates a fresh context and a blank page in it.
pub async fn prepare(browser: &Browser) -> Result<PreparedTab, TabError> {
    let start = std::time::Instant::now();
    let context_id = tokio::time::timeout(
        TAB_OP_TIMEOUT,
        browser.create_browser_context(CreateBrowserContextParams::default()),
    )
    .await
    .map_err(|_| TabError::Timeout(TAB_OP_TIMEOUT))??;
    let mut params = CreateTargetParams::new("about:blank");
    params.browser_context_id = Some(context_id.clone());
    // chromiumoxide's page set-up enables lifecycle events, which captures wait on.
    let page = match tokio::time::timeout(TAB_OP_TIMEOUT, browser.new_page(params)).await {
        Ok(Ok(page)) => page,
        failed => {
            // Never leave a context behind without its page.
            let _ = tokio::time::timeout(
                TAB_OP_TIMEOUT,
                browser.execute(DisposeBrowserContextParams::new(context_id)),
            )
            .await;
            return Err(match failed {
                Ok(Err(e)) => e.into(),
                _ => TabError::Timeout(TAB_OP_TIMEOUT),
            });
        }
    };
    tracing::debug!(ms = start.elapsed().as_secs_f64() * 1e3, "tab prepared");
    Ok(PreparedTab {
        context_id,
        page,
        viewport: None,
    })
}

/// Like [`prepare`], with the viewport most captures ask for (`width` × `height` at scale 1)
/// already set, so a capture of that size skips the step.
pub async fn prepare_sized(
    browser: &Browser,
    width: u32,
    height: u32,
) -> Result<PreparedTab, TabError> {
    let mut tab = prepare(browser).await?;
    let sized = tokio::time::timeout(
        TAB_OP_TIMEOUT,
        tab.page.execute(SetDeviceMetricsOverrideParams::new(
            width, height, 1.0, false,
        )),
    )
    .await;
    match sized {
        Ok(Ok(_)) => {
            tab.viewport = Some((width, height));
            Ok(tab)
        }
        failed => {
            let _ = dispose(browser, tab).await;
            Err(match failed {
                Ok(Err(e)) => e.into(),
                _ => TabError::Timeout(TAB_OP_TIMEOUT),
            })
        }
    }
}

/// Closes the tab's context and with it its page, cookies, cache and storage.
pub async fn dispose(browser: &Browser, tab: PreparedTab) -> Result<(), TabError> {
    let start = std::time::Instant::now();
    let done = tokio::time::timeout(TAB_OP_TIMEOUT, async {
        browser
            .execute(DisposeBrowserContextParams::new(tab.context_id))
            .await?;
        Ok(())
    })
    .await
    .map_err(|_| TabError::Timeout(TAB_OP_TIMEOUT))?;
    tracing::debug!(ms = start.elapsed().as_secs_f64() * 1e3, "tab disposed");
    done
}
