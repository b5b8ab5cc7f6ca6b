//! One capture on a prepared tab: emulation, navigation and its waits, page tweaks, and the
//! screenshot itself (viewport, element, or full page, tiled when taller than Chromium paints in
//! one go). Every CDP call here is bounded by the caller's deadline; this module knows nothing of
//! queues, browsers' lifecycles or HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::dom::Rgba;
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDefaultBackgroundColorOverrideParams, SetDeviceMetricsOverrideParams,
    SetEmulatedMediaParams, SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::network::LoaderId;
use chromiumoxide::cdp::browser_protocol::network::{
    CookieParam, EnableParams as NetworkEnableParams, Headers, SetCookiesParams,
    SetExtraHttpHeadersParams,
};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, ClientNavigationDisposition,
    EventFrameRequestedNavigation, EventLifecycleEvent, EventNavigatedWithinDocument, FrameId,
    GetFrameTreeParams, GetLayoutMetricsParams, NavigateParams, Viewport,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::error::CdpError;
use chromiumoxide::Page;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use std::sync::Arc;

use super::encode;
use super::job::{CaptureError, CaptureSpec, ImageFormat, Phases, WaitUntil};
use crate::config::PngEncoder;

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

/// Largest canvas stitched in memory, in device pixels (256 MB of RGBA; a 1280-px-wide page at
/// scale 1 up to 50,000 px tall). Taller captures are cut and flagged as truncated.
const MAX_STITCH_PIXELS: u64 = 64_000_000;

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

/// A region of the page in CSS pixels.
#[derive(Debug, Clone, Copy)]
struct Region {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

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

/// Runs the capture. The caller bounds it with the job's deadline.
pub async fn run(
    page: &Page,
    preset: Option<(u32, u32)>,
    spec: &CaptureSpec,
    settings: CaptureSettings,
    deadline: tokio::time::Instant,
    progress: &Progress,
) -> Result<Rendered> {
    let start = std::time::Instant::now();
    emulate(page, preset, spec).await?;
    let emulated = start.elapsed();
    let main = main_frame(page).await?;
    progress.set(true);
    // The page may navigate itself (a script, a refresh, even before it finished loading):
    // watch for it, so the capture is of where it went and never races a document being
    // replaced. `Page.navigate` itself is not renderer-initiated, so it asks for nothing here.
    let mut moves = PageMoves::watch(page).await?;
    navigate(page, spec, &main).await?;
    ensure_not_error_page(page).await?;
    moves.forget_first_document();
    let navigated = start.elapsed();
    prepare_page(page, spec, &main, deadline, &mut moves).await?;
    if !spec.delay.is_zero() {
        tokio::time::sleep(spec.delay).await;
    }
    moves.settle_if_moved(page, spec, &main).await?;
    let prepared = start.elapsed();
    progress.set(false);
    let mut rendered = match shoot(page, spec, settings, deadline).await {
        // A page that navigated under the shot (to an error page, say) is the page's doing.
        Err(Failure::Cdp(e)) => {
            ensure_not_error_page(page).await?;
            return Err(Failure::Cdp(e));
        }
        other => other?,
    };
    // A refresh or a script may have moved the page on to an error page meanwhile.
    ensure_not_error_page(page).await?;
    let shot = start.elapsed() - prepared;
    rendered.phases = Phases {
        context: Duration::ZERO,
        emulate: emulated,
        navigate: navigated - emulated,
        page: prepared - navigated,
        capture: shot.saturating_sub(rendered.phases.encode),
        encode: rendered.phases.encode,
    };
    Ok(rendered)
}

/// Sets what the capture asks for on its fresh page. `preset` is the viewport the tab was
/// prepared with, which is not set again.
async fn emulate(page: &Page, preset: Option<(u32, u32)>, spec: &CaptureSpec) -> Result<()> {
    let prepared = preset == Some((spec.width, spec.height)) && spec.device_scale_factor == 1.0;
    if !prepared {
        page.execute(SetDeviceMetricsOverrideParams::new(
            spec.width,
            spec.height,
            spec.device_scale_factor,
            false,
        ))
        .await?;
    }
    if spec.dark_mode {
        page.execute(SetEmulatedMediaParams {
            features: Some(vec![MediaFeature::new("prefers-color-scheme", "dark")]),
            ..Default::default()
        })
        .await?;
    }
    if let Some(ua) = &spec.user_agent {
        page.execute(SetUserAgentOverrideParams::new(ua.clone()))
            .await?;
    }
    if !spec.headers.is_empty() {
        // Pages start without the Network domain (`lean_pages`), and Chromium sends extra
        // headers only while it is enabled.
        page.execute(NetworkEnableParams::default()).await?;
        let map: serde_json::Map<String, serde_json::Value> = spec
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        page.execute(SetExtraHttpHeadersParams::new(Headers::new(
            serde_json::Value::Object(map),
        )))
        .await?;
    }
    if !spec.cookies.is_empty() {
        let cookies = spec
            .cookies
            .iter()
            .map(|c| {
                let mut p = CookieParam::new(c.name.clone(), c.value.clone());
                if c.domain.is_none() {
                    p.url = Some(spec.url.to_string());
                }
                p.domain = c.domain.clone();
                p.path = c.path.clone();
                p.secure = c.secure;
                p.http_only = c.http_only;
                p
            })
            .collect::<Vec<_>>();
        page.execute(SetCookiesParams::new(cookies)).await?;
    }
    if spec.omit_background && spec.format != ImageFormat::Jpeg {
        let transparent = Rgba {
            r: 0,
            g: 0,
            b: 0,
            a: Some(0.0),
        };
        page.execute(SetDefaultBackgroundColorOverrideParams {
            color: Some(transparent),
        })
        .await?;
    }
    Ok(())
}

/// The lifecycle event a capture waits for.
fn wanted_event(spec: &CaptureSpec) -> &'static str {
    match spec.wait_until {
        WaitUntil::Load => "load",
        WaitUntil::DomContentLoaded => "DOMContentLoaded",
        WaitUntil::NetworkIdle => "networkIdle",
    }
}

/// The page's main frame (a page target's main frame has the target's id).
async fn main_frame(page: &Page) -> Result<FrameId> {
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
async fn navigate(page: &Page, spec: &CaptureSpec, main: &FrameId) -> Result<()> {
    // Subscribe before navigating so no lifecycle event can be missed.
    let mut lifecycle = page.event_listener::<EventLifecycleEvent>().await?;
    let wanted = wanted_event(spec);
    let answer = page.execute(NavigateParams::new(spec.url.to_string()));
    tokio::pin!(answer);
    let mut answered = false;
    // The main frame's newest document, and the documents that reached `wanted`.
    let mut document: Option<LoaderId> = None;
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
                if wanted != "networkIdle" || reached.contains(&loader) {
                    return Ok(());
                }
                document.get_or_insert(loader);
            }
            event = lifecycle.next() => {
                let Some(event) = event else {
                    return Err(Failure::Cdp(CdpError::NoResponse));
                };
                if event.frame_id != *main {
                    continue;
                }
                if event.name == "init" {
                    // A new document in the main frame (the one navigated to, or one the page
                    // moved on to): the newest is the one to wait for.
                    document = Some(event.loader_id.clone());
                } else if event.name == wanted {
                    if document.as_ref() == Some(&event.loader_id) {
                        // chromiumoxide's answer, when it is about to come (it does once the
                        // page has no frame left loading), says why a navigation failed.
                        if !answered {
                            if let Ok(nav) = tokio::time::timeout(ANSWER_GRACE, &mut answer).await {
                                check_answer(nav?.result)?;
                            }
                        }
                        return Ok(());
                    }
                    reached.push(event.loader_id.clone());
                }
            }
        }
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

/// Navigations of the page's own making after its first document loaded.
struct PageMoves {
    /// `Page.frameRequestedNavigation`: sent by the renderer as a navigation is asked for, so it
    /// is in hand before the answer to the script that asked.
    requested: BoxStream<'static, Arc<EventFrameRequestedNavigation>>,
    lifecycle: BoxStream<'static, Arc<EventLifecycleEvent>>,
    /// Same-document navigations (`location.hash = …`): asked for, but no new document comes.
    within: BoxStream<'static, Arc<EventNavigatedWithinDocument>>,
}

/// How long a navigation the page asked for may take to commit a document before the capture
/// goes on without it (one that was cancelled, answered 204, or became a download never does).
const REQUESTED_COMMIT_GRACE: Duration = Duration::from_secs(2);

impl PageMoves {
    async fn watch(page: &Page) -> Result<PageMoves> {
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
    fn forget_first_document(&mut self) {
        while let Some(Some(_)) = self.lifecycle.next().now_or_never() {}
        while let Some(Some(_)) = self.within.next().now_or_never() {}
    }

    /// Whether the main frame asked to navigate itself (not a new window, not a download) since
    /// the last call (events already received).
    fn main_frame_moved(&mut self, main: &FrameId) -> bool {
        let mut moved = false;
        while let Some(Some(event)) = self.requested.next().now_or_never() {
            moved |= event.frame_id == *main
                && event.disposition == ClientNavigationDisposition::CurrentTab;
        }
        moved
    }

    /// When the main frame asked to navigate, waits for its next document (the caller's
    /// deadline bounds the wait) and fails if that is an error page. A navigation that stays
    /// within the document, or commits nothing within [`REQUESTED_COMMIT_GRACE`], is not waited
    /// for further.
    async fn settle_if_moved(
        &mut self,
        page: &Page,
        spec: &CaptureSpec,
        main: &FrameId,
    ) -> Result<()> {
        if !self.main_frame_moved(main) {
            return Ok(());
        }
        let wanted = wanted_event(spec);
        let grace = tokio::time::sleep(REQUESTED_COMMIT_GRACE);
        tokio::pin!(grace);
        let mut document: Option<LoaderId> = None;
        // The new document's `init` may have been among the first document's events
        // (`forget_first_document`): the grace then ends the wait, and the error-page check
        // still judges where the page went.
        loop {
            tokio::select! {
                () = &mut grace, if document.is_none() => break,
                Some(event) = self.within.next(), if document.is_none() => {
                    if event.frame_id == *main {
                        break;
                    }
                }
                event = self.lifecycle.next() => {
                    let Some(event) = event else {
                        return Err(Failure::Cdp(CdpError::NoResponse));
                    };
                    if event.frame_id != *main {
                        continue;
                    }
                    if event.name == "init" {
                        document = Some(event.loader_id.clone());
                    } else if event.name == wanted && document.as_ref() == Some(&event.loader_id) {
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
async fn settle_after_navigation(
    lifecycle: &mut (impl futures::Stream<Item = std::sync::Arc<EventLifecycleEvent>> + Unpin),
    spec: &CaptureSpec,
    main: &FrameId,
) -> Result<()> {
    let wanted = wanted_event(spec);
    let mut document: Option<LoaderId> = None;
    while let Some(event) = lifecycle.next().await {
        if event.frame_id != *main {
            continue;
        }
        if event.name == "init" {
            document = Some(event.loader_id.clone());
        } else if event.name == wanted && document.as_ref() == Some(&event.loader_id) {
            return Ok(());
        }
    }
    Err(Failure::Cdp(CdpError::NoResponse))
}

/// Fails when the main frame shows Chromium's error page instead of a document: the page (or a
/// refresh, or its script) navigated somewhere that could not be loaded — refused by the
/// egress policy or unreachable. Never captured, never charged.
async fn ensure_not_error_page(page: &Page) -> Result<()> {
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

/// Whether a DevTools error means the page navigated away under a running script (its
/// execution context went with the old document), as opposed to a fault of the browser.
fn navigated_away(error: &CdpError) -> bool {
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

async fn prepare_page(
    page: &Page,
    spec: &CaptureSpec,
    main: &FrameId,
    deadline: tokio::time::Instant,
    moves: &mut PageMoves,
) -> Result<()> {
    if let Some(selector) = &spec.wait_for_selector {
        // Leave time to report "not found" before the job's own deadline passes.
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let budget = remaining.saturating_sub(SELECTOR_REPORT_RESERVE);
        if !wait_for_element(page, selector, budget).await? {
            return Err(CaptureError::SelectorNotFound(selector.clone()).into());
        }
    }
    if spec.scroll_to_load {
        let script = format!(
            r#"(async () => {{
                const maxY = {max};
                const pause = ms => new Promise(r => setTimeout(r, ms));
                let y = 0;
                for (let i = 0; i < 400; i++) {{
                    const h = Math.min(document.documentElement.scrollHeight, maxY);
                    if (y + innerHeight >= h) break;
                    y += innerHeight;
                    window.scrollTo(0, y);
                    await pause(100);
                }}
                window.scrollTo(0, 0);
                const pending = Array.from(document.images).filter(i => !i.complete);
                await Promise.race([
                    Promise.all(pending.map(i => new Promise(r => {{
                        i.addEventListener('load', r, {{ once: true }});
                        i.addEventListener('error', r, {{ once: true }});
                    }}))),
                    pause(3000),
                ]);
                return true;
            }})()"#,
            max = spec.max_full_page_height
        );
        evaluate(page, script, true).await?;
    }
    let mut css = String::new();
    for selector in &spec.hide_selectors {
        // One rule per selector: an invalid one must not void the others.
        css.push_str(selector);
        css.push_str(" { visibility: hidden !important; }\n");
    }
    if let Some(extra) = &spec.css {
        css.push_str(extra);
    }
    if !css.is_empty() {
        let script = format!(
            "(() => {{ const s = document.createElement('style'); s.textContent = {}; \
             (document.head || document.documentElement).appendChild(s); return true; }})()",
            js_string(&css)
        );
        evaluate(page, script, false).await?;
    }
    if let Some(js) = &spec.js {
        // The script may navigate the page: then the capture is of where it went.
        match evaluate_as(page, js.clone(), true, false).await {
            Err(Failure::Cdp(e)) if navigated_away(&e) => {
                moves.main_frame_moved(main);
                settle_after_navigation(&mut moves.lifecycle, spec, main).await?;
                ensure_not_error_page(page).await?;
            }
            other => {
                other?;
                moves.settle_if_moved(page, spec, main).await?;
            }
        }
    }
    Ok(())
}

async fn shoot(
    page: &Page,
    spec: &CaptureSpec,
    settings: CaptureSettings,
    deadline: tokio::time::Instant,
) -> Result<Rendered> {
    let dsf = spec.device_scale_factor;
    let region = if let Some(selector) = &spec.selector {
        let budget = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(SELECTOR_REPORT_RESERVE)
            .min(settings.element_wait);
        Some(element_region(page, selector, budget).await?)
    } else if spec.full_page {
        let metrics = page
            .execute(GetLayoutMetricsParams::default())
            .await?
            .result;
        Some(Region {
            x: 0.0,
            y: 0.0,
            width: f64::from(spec.width),
            height: metrics.css_content_size.height.max(1.0),
        })
    } else {
        None
    };

    let Some(mut region) = region else {
        // Viewport capture: one call, no clip.
        let image = screenshot(page, spec, settings, None).await?;
        return finish(image, spec, settings, false).await;
    };

    // Cut at the configured height, the format's limit and the stitching budget.
    let mut truncated = false;
    let format_max = f64::from(spec.format.max_dimension()) / dsf;
    let stitch_max = MAX_STITCH_PIXELS as f64 / (region.width * dsf * dsf).max(1.0);
    let limit = f64::from(spec.max_full_page_height)
        .min(format_max)
        .min(stitch_max)
        .floor();
    if region.height > limit {
        region.height = limit;
        truncated = true;
    }

    let tile_css = (f64::from(settings.max_tile_height) / dsf).floor();
    if region.height <= tile_css {
        let image = screenshot(page, spec, settings, Some(region)).await?;
        return finish(image, spec, settings, truncated).await;
    }
    tiled(page, spec, region, tile_css, truncated).await
}

/// Captures `region` strip by strip and stitches the strips in Rust.
async fn tiled(
    page: &Page,
    spec: &CaptureSpec,
    region: Region,
    tile_css: f64,
    truncated: bool,
) -> Result<Rendered> {
    let dsf = spec.device_scale_factor;
    let width_px = (region.width * dsf).round() as u32;
    let height_px = (region.height * dsf).round() as u32;
    let mut canvas = image::RgbaImage::new(width_px, height_px);
    let mut encoding = Duration::ZERO;
    let mut offset = 0.0;
    while offset < region.height {
        let strip = Region {
            x: region.x,
            y: region.y + offset,
            width: region.width,
            height: tile_css.min(region.height - offset),
        };
        let params = CaptureScreenshotParams {
            format: Some(CaptureScreenshotFormat::Png),
            quality: None,
            clip: Some(viewport(strip)),
            from_surface: Some(true),
            capture_beyond_viewport: Some(true),
            optimize_for_speed: Some(true),
        };
        let bytes = decode_base64(page.execute(params).await?.result.data.as_ref())?;
        let top = (offset * dsf).round() as u32;
        let stitching = std::time::Instant::now();
        canvas = blocking(move || {
            let tile = encode::decode(&bytes)?;
            encode::blit(&mut canvas, &tile, top);
            Ok(canvas)
        })
        .await?;
        encoding += stitching.elapsed();
        offset += strip.height;
    }
    let format = spec.format;
    let quality = spec.quality;
    let opaque = !spec.omit_background || format == ImageFormat::Jpeg;
    let encoding_started = std::time::Instant::now();
    let image = blocking(move || encode::encode(&canvas, format, quality, opaque)).await?;
    encoding += encoding_started.elapsed();
    Ok(Rendered {
        image,
        width: width_px,
        height: height_px,
        truncated,
        phases: Phases {
            encode: encoding,
            ..Phases::default()
        },
    })
}

async fn screenshot(
    page: &Page,
    spec: &CaptureSpec,
    settings: CaptureSettings,
    region: Option<Region>,
) -> Result<Vec<u8>> {
    let fast_png = spec.format == ImageFormat::Png && settings.png_encoder == PngEncoder::Rust;
    let params = CaptureScreenshotParams {
        format: Some(match spec.format {
            ImageFormat::Png => CaptureScreenshotFormat::Png,
            ImageFormat::Jpeg => CaptureScreenshotFormat::Jpeg,
            ImageFormat::Webp => CaptureScreenshotFormat::Webp,
        }),
        quality: match spec.format {
            ImageFormat::Png => None,
            _ => Some(i64::from(spec.quality.unwrap_or(80))),
        },
        clip: region.map(viewport),
        from_surface: Some(true),
        capture_beyond_viewport: Some(region.is_some()),
        optimize_for_speed: Some(fast_png),
    };
    let data = page.execute(params).await?.result.data;
    decode_base64(data.as_ref())
}

/// Final touches on the blocking pool: PNG recompression (when configured) and measuring.
async fn finish(
    image: Vec<u8>,
    spec: &CaptureSpec,
    settings: CaptureSettings,
    truncated: bool,
) -> Result<Rendered> {
    let recompress = spec.format == ImageFormat::Png && settings.png_encoder == PngEncoder::Rust;
    let encoding = std::time::Instant::now();
    let image = if recompress {
        blocking(move || encode::recompress_png(&image)).await?
    } else {
        image
    };
    let encoding = if recompress {
        encoding.elapsed()
    } else {
        Duration::ZERO
    };
    let size = imagesize::blob_size(&image)
        .map_err(|e| CaptureError::Internal(format!("unreadable image from Chromium: {e}")))?;
    Ok(Rendered {
        width: size.width as u32,
        height: size.height as u32,
        image,
        truncated,
        phases: Phases {
            encode: encoding,
            ..Phases::default()
        },
    })
}

/// Runs image work on the bounded encoding pool, off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::result::Result<T, encode::EncodeError> + Send + 'static,
) -> Result<T> {
    let _permit = encode::pool()
        .acquire()
        .await
        .map_err(|e| CaptureError::Internal(format!("image pool: {e}")))?;
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(CaptureError::Internal(e.to_string()).into()),
        Err(e) => Err(CaptureError::Internal(format!("image task: {e}")).into()),
    }
}

fn viewport(region: Region) -> Viewport {
    Viewport {
        x: region.x,
        y: region.y,
        width: region.width,
        height: region.height,
        scale: 1.0,
    }
}

fn decode_base64(data: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| CaptureError::Internal(format!("bad screenshot data: {e}")).into())
}

/// Waits until `selector` matches, polling inside the page. `Ok(false)` when time runs out.
async fn wait_for_element(page: &Page, selector: &str, budget: Duration) -> Result<bool> {
    let script = format!(
        r#"new Promise((resolve, reject) => {{
            const sel = {sel};
            const until = Date.now() + {ms};
            const check = () => {{
                let found;
                try {{ found = document.querySelector(sel); }} catch (e) {{ reject(e); return; }}
                if (found) resolve(true);
                else if (Date.now() >= until) resolve(false);
                else setTimeout(check, 25);
            }};
            check();
        }})"#,
        sel = js_string(selector),
        ms = budget.as_millis()
    );
    match evaluate(page, script, true).await {
        Ok(value) => Ok(value.as_bool().unwrap_or(false)),
        Err(Failure::Capture(CaptureError::ScriptFailed(_))) => {
            Err(CaptureError::InvalidSelector(selector.to_string()).into())
        }
        Err(other) => Err(other),
    }
}

async fn element_region(page: &Page, selector: &str, budget: Duration) -> Result<Region> {
    if !wait_for_element(page, selector, budget).await? {
        return Err(CaptureError::SelectorNotFound(selector.to_string()).into());
    }
    let script = format!(
        "(() => {{ const el = document.querySelector({}); if (!el) return null; \
         const r = el.getBoundingClientRect(); \
         return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; }})()",
        js_string(selector)
    );
    let value = evaluate(page, script, false).await?;
    let rect: Option<[f64; 4]> = serde_json::from_value(value).ok();
    match rect {
        Some([x, y, width, height]) if width >= 1.0 && height >= 1.0 => Ok(Region {
            x: x.max(0.0),
            y: y.max(0.0),
            width,
            height,
        }),
        _ => Err(CaptureError::SelectorNotFound(format!(
            "{selector} (element has no visible size)"
        ))
        .into()),
    }
}

/// Evaluates `expression` in the page; a thrown exception becomes [`CaptureError::ScriptFailed`].
async fn evaluate(
    page: &Page,
    expression: String,
    await_promise: bool,
) -> Result<serde_json::Value> {
    evaluate_as(page, expression, await_promise, true).await
}

/// Evaluates `expression`; `by_value` = false leaves the result in the page (a customer's
/// script may end on a value that cannot be serialized: a window, a DOM node).
async fn evaluate_as(
    page: &Page,
    expression: String,
    await_promise: bool,
    by_value: bool,
) -> Result<serde_json::Value> {
    let mut params = EvaluateParams::new(expression);
    params.await_promise = Some(await_promise);
    params.return_by_value = Some(by_value);
    let result = page.execute(params).await?.result;
    if let Some(details) = result.exception_details {
        let message = details
            .exception
            .as_ref()
            .and_then(|e| e.description.clone())
            .unwrap_or(details.text);
        let first_line = message.lines().next().unwrap_or_default().to_string();
        return Err(CaptureError::ScriptFailed(first_line).into());
    }
    Ok(result.result.value.unwrap_or(serde_json::Value::Null))
}

/// A string as a JavaScript literal.
fn js_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}
