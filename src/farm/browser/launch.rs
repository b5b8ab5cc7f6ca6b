//! Starting one browser: the Chromium process, its DevTools connection (pages set up lean), the
//! watchers that notice it die, and its first spare tabs.

use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::Browser;
use futures::StreamExt;
use tokio::sync::watch;

use super::BrowserSettings;
use crate::farm::messages::RestartReason;
use crate::farm::process::ChromiumProcess;
use crate::farm::tab::{self, PreparedTab};

/// A running Chromium and the signal that it died.
pub(super) struct Running {
    pub(super) process: ChromiumProcess,
    pub(super) browser: Arc<Browser>,
    /// Becomes `Some(reason)` when the process exits or the DevTools connection ends.
    pub(super) dead: watch::Receiver<Option<RestartReason>>,
}

impl Running {
    /// Drops the DevTools client and kills the process group.
    pub(super) async fn shutdown(self) {
        drop(self.browser);
        self.process.kill().await;
    }
}

pub(super) async fn launch(
    settings: &BrowserSettings,
    label: &str,
) -> Result<(Running, Vec<PreparedTab>), String> {
    let process = ChromiumProcess::launch(&settings.chromium, &settings.placement, label)
        .await
        .map_err(|e| e.to_string())?;
    let config = HandlerConfig {
        viewport: None,
        request_timeout: settings.request_timeout,
        // Certificate errors are navigation errors (`navigation_failed`), never ignored.
        ignore_https_errors: false,
        // Captures use raw DevTools calls and lifecycle events only: a page gets no Runtime,
        // Network, Performance or Log domain and no utility world, each of which costs a fresh
        // renderer CPU on every capture (vendor/chromiumoxide/PATCHES.md).
        lean_pages: true,
        ..HandlerConfig::default()
    };
    let connect = tokio::time::timeout(
        Duration::from_millis(settings.chromium.launch_timeout_ms),
        Browser::connect_with_config(process.ws_url.clone(), config),
    )
    .await;
    let (browser, mut handler) = match connect {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            process.kill().await;
            return Err(format!("devtools connection failed: {e}"));
        }
        Err(_) => {
            process.kill().await;
            return Err("devtools connection timed out".into());
        }
    };
    let (dead_tx, dead) = watch::channel(None);
    let dead_tx = Arc::new(dead_tx);
    let set_dead = |tx: Arc<watch::Sender<Option<RestartReason>>>, reason| {
        tx.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    };
    // The handler must be polled all the time; its first error means the connection is gone
    // (after an error it never yields again).
    let tx = dead_tx.clone();
    tokio::spawn(async move {
        while let Some(event) = handler.next().await {
            if let Err(e) = event {
                tracing::debug!("devtools handler ended: {e}");
                break;
            }
        }
        set_dead(tx, RestartReason::CdpDisconnected);
    });
    let exited = process.exited();
    let tx = dead_tx.clone();
    tokio::spawn(async move {
        exited.await;
        set_dead(tx, RestartReason::ProcessExited);
    });
    let browser = Arc::new(browser);
    let mut tabs = Vec::with_capacity(settings.tabs + 1);
    let (width, height) = settings.capture.default_viewport;
    for _ in 0..=settings.tabs {
        match tab::prepare_sized(&browser, width, height).await {
            Ok(tab) => tabs.push(tab),
            Err(e) => {
                drop(browser);
                process.kill().await;
                return Err(format!("could not open a tab: {e}"));
            }
        }
    }
    Ok((
        Running {
            process,
            browser,
            dead,
        },
        tabs,
    ))
}
