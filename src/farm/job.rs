//! What the farm is asked to do and what it answers: a validated [`CaptureSpec`], the [`Job`]
//! that carries it through the queue with its deadline and reply path, and the outcome types.
//! Nothing here knows HTTP; the API layer maps [`CaptureError`] codes to statuses.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use url::Url;

use crate::content_filters::Wanted;

/// Output format: an image, or a PDF printed by Chromium (`Page.printToPDF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
    Pdf,
}

impl ImageFormat {
    pub const ALL: [ImageFormat; 4] = [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Webp,
        ImageFormat::Pdf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Webp => "webp",
            ImageFormat::Pdf => "pdf",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Pdf => "application/pdf",
        }
    }

    /// Largest image side the format can encode, in pixels.
    pub fn max_dimension(self) -> u32 {
        match self {
            ImageFormat::Png => 1 << 24,
            ImageFormat::Jpeg => 65_535,
            ImageFormat::Webp => 16_383,
            // Not painted as one image: pages.
            ImageFormat::Pdf => 1 << 24,
        }
    }
}

/// Which page event ends the navigation wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitUntil {
    Load,
    DomContentLoaded,
    NetworkIdle,
}

/// A cookie set before navigation. Without a domain it applies to the capture URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSpec {
    pub name: String,
    pub value: String,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
}

/// A fully validated capture request; every field is within the configured caps.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    /// The page navigated to: the customer's URL, or [`HTML_DOCUMENT_URL`] with `html`.
    pub url: Url,
    /// Markup rendered instead of a URL: served by the capture itself as the document of
    /// [`HTML_DOCUMENT_URL`] (it never leaves the browser); its subresources load like any page's.
    pub html: Option<String>,
    /// Print to PDF instead of a screenshot (`format=pdf`).
    pub pdf: Option<PdfSpec>,
    pub format: ImageFormat,
    /// JPEG/WebP quality 1–100.
    pub quality: Option<u8>,
    /// Viewport, CSS pixels.
    pub width: u32,
    pub height: u32,
    pub device_scale_factor: f64,
    pub full_page: bool,
    /// Cut for full-page captures, CSS pixels.
    pub max_full_page_height: u32,
    /// Largest image the capture may return, in bytes.
    pub max_output_bytes: usize,
    pub selector: Option<String>,
    pub wait_until: WaitUntil,
    pub wait_for_selector: Option<String>,
    pub delay: Duration,
    pub dark_mode: bool,
    pub hide_selectors: Vec<String>,
    pub css: Option<String>,
    pub js: Option<String>,
    pub user_agent: Option<String>,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<CookieSpec>,
    pub omit_background: bool,
    pub scroll_to_load: bool,
    /// Capture the page even when its main document answered with an HTTP error (≥ 400):
    /// charged like any image. Off: such a page fails as `target_http_error`, free.
    pub allow_http_errors: bool,
    /// A mobile layout (a device preset): the viewport meta tag counts, scrollbars overlay.
    pub mobile: bool,
    /// Touch events and `(pointer: coarse)`, as on a phone or tablet.
    pub touch: bool,
    /// An IANA time zone for the page's clock (`Europe/Berlin`).
    pub timezone: Option<String>,
    /// A BCP 47 locale: `navigator.language`, `Intl` and `Accept-Language`.
    pub locale: Option<String>,
    /// Where the page's geolocation API says it is (the permission is granted to its origin).
    pub geolocation: Option<Geolocation>,
    /// `prefers-reduced-motion: reduce`.
    pub reduced_motion: bool,
    /// The CSS media type the page is rendered for (`None`: Chromium's, screen).
    pub media: Option<Media>,
    /// Elements clicked, in order, before the shot (CSS selectors).
    pub click: Vec<String>,
    /// An element scrolled to the top of the viewport before the shot.
    pub scroll_to: Option<String>,
    /// A JavaScript expression waited on until it is truthy.
    pub wait_for_function: Option<String>,
    /// The part of the page to capture, in CSS pixels of the document (with `full_page`, of the
    /// whole page; else of the page as laid out in the viewport).
    pub clip: Option<Clip>,
    /// Report what the page said ([`PageInfo`]) with the image (`response_type=json`).
    pub page_info: bool,
    /// Kinds of request the page may not make (`block_resources`).
    pub block_resources: Vec<ResourceKind>,
    /// URL patterns the page may not request (`*` any run, `?` one character).
    pub block_urls: Vec<String>,
    /// The filter lists applied (`block_ads`, `block_trackers`, `block_cookie_banners`).
    pub filters: Wanted,
}

impl CaptureSpec {
    /// The transaction description of a capture of this spec (at most ~200 bytes).
    pub fn describe(&self) -> String {
        const MAX: usize = 200;
        let what = if self.pdf.is_some() {
            "PDF"
        } else {
            "Screenshot"
        };
        let mut text = match &self.html {
            Some(html) => format!("{what} of supplied HTML ({} bytes)", html.len()),
            None => format!("{what} of {}", self.url),
        };
        if text.len() > MAX {
            let mut cut = MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

/// The address an `html` capture's document has: a name under `.invalid` (RFC 2606), which
/// nothing resolves. The capture answers the main frame's request for it with the markup, and
/// fails every other request to its origin inside the browser.
pub const HTML_DOCUMENT_URL: &str = "http://html.shotfarm.invalid/";

/// How a `format=pdf` capture is printed (`Page.printToPDF`); lengths in inches.
#[derive(Debug, Clone, PartialEq)]
pub struct PdfSpec {
    pub paper_width: f64,
    pub paper_height: f64,
    /// Paper turned: Chromium swaps width and height.
    pub landscape: bool,
    /// Top, right, bottom, left; `None`: Chromium's default (1 cm each).
    pub margins: Option<[f64; 4]>,
    pub print_background: bool,
    /// 0.1–2.
    pub scale: f64,
    /// Pages to print, one-based inclusive ranges, ascending and disjoint, at most `max_pages`
    /// pages in all; empty: the first `max_pages` pages.
    pub page_ranges: Vec<(u32, u32)>,
    /// The cap on printed pages (`capture.max_pdf_pages`).
    pub max_pages: u32,
}

impl PdfSpec {
    /// The `pageRanges` Chromium is asked for: never more than `max_pages` pages.
    pub fn chromium_page_ranges(&self) -> String {
        if self.page_ranges.is_empty() {
            return format!("1-{}", self.max_pages);
        }
        self.page_ranges
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A kind of request a capture can block (every kind but the page's own document) — the kinds
/// Chromium's Fetch domain can pause by type. Text tracks, web sockets and manifests are not
/// among them: its filter refuses them ("Unknown resource type in fetch filter"), so they are
/// refused as options rather than failing every capture that asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Stylesheet,
    Image,
    Media,
    Font,
    Script,
    Xhr,
    Fetch,
    EventSource,
    Other,
}

impl ResourceKind {
    /// Every kind, by its `block_resources` name.
    pub const NAMES: [(&'static str, ResourceKind); 9] = [
        ("stylesheet", ResourceKind::Stylesheet),
        ("image", ResourceKind::Image),
        ("media", ResourceKind::Media),
        ("font", ResourceKind::Font),
        ("script", ResourceKind::Script),
        ("xhr", ResourceKind::Xhr),
        ("fetch", ResourceKind::Fetch),
        ("eventsource", ResourceKind::EventSource),
        ("other", ResourceKind::Other),
    ];

    /// The kind named `name` (case-insensitive).
    pub fn named(name: &str) -> Option<ResourceKind> {
        let name = name.trim().to_ascii_lowercase();
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, kind)| *kind)
    }
}

/// What the captured page said about itself, read just before the shot.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PageInfo {
    pub title: String,
    /// Where the page ended up, after redirects and its own navigations.
    pub url: String,
    /// The HTTP status of its main document (0 when Chromium does not say).
    pub status: u16,
    /// Its Open Graph (`og:…`) and Twitter card (`twitter:…`) metadata, first value of each.
    pub meta: std::collections::BTreeMap<String, String>,
}

/// A rectangle of the page, CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// A position for the page's geolocation API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geolocation {
    pub latitude: f64,
    pub longitude: f64,
    /// Metres.
    pub accuracy: f64,
}

/// The CSS media type a page is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Screen,
    Print,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Screen => "screen",
            Media::Print => "print",
        }
    }
}

/// A finished capture.
#[derive(Debug, Clone)]
pub struct CaptureOutput {
    pub image: bytes::Bytes,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// True when a full-page capture was cut at the configured or format maximum.
    pub truncated: bool,
    pub timings: Timings,
    /// What the page said, when the capture asked (`response_type=json`).
    pub page: Option<PageInfo>,
}

/// Where a job's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Enqueue → dispatch to a browser (summed over attempts).
    pub queue: Duration,
    /// Dispatch → image ready (the last attempt).
    pub render: Duration,
    /// The parts of `render`.
    pub phases: Phases,
}

/// The parts of one capture's render time, in the order they happen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Waiting for a fresh context (zero when one was prepared while the browser was idle).
    pub context: Duration,
    /// Viewport, scale, media and headers set on the page.
    pub emulate: Duration,
    /// Navigation until the requested lifecycle event.
    pub navigate: Duration,
    /// The page's own time after loading: waits, scrolling, css/js, `delay`.
    pub page: Duration,
    /// Chromium painting and encoding the image (every tile).
    pub capture: Duration,
    /// Our own image work on the encoding pool: recompression, stitching, encoding.
    pub encode: Duration,
}

/// Why a capture failed. Each variant has a stable [`code`](CaptureError::code).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CaptureError {
    #[error("the capture queue is full")]
    QueueFull { retry_after: Duration },
    #[error("the capture did not finish within its timeout")]
    Timeout,
    #[error("navigation failed: {0}")]
    NavigationFailed(String),
    #[error("the page answered HTTP {0}: an error page is not captured (set allow_http_errors=true to capture it anyway)")]
    TargetHttpError(u16),
    #[error("the page answered with an empty document: there is nothing to capture")]
    EmptyPage,
    #[error("no element matches the selector `{0}`")]
    SelectorNotFound(String),
    #[error("wait_for_function never became truthy before the timeout")]
    FunctionTimeout,
    #[error("`{0}` is not a valid CSS selector")]
    InvalidSelector(String),
    #[error("pdf_page_ranges selects no page of the document (it has fewer pages)")]
    PdfNoPages,
    #[error("the image is {bytes} bytes, more than the limit of {limit}: capture a smaller area, or use jpeg or webp")]
    OutputTooLarge { bytes: usize, limit: usize },
    #[error("the browser crashed during the capture")]
    BrowserCrashed,
    #[error(
        "the page crashed its renderer (out of memory, or a renderer fault): it is not retried"
    )]
    PageCrashed,
    #[error("the browser failed the capture twice (a DevTools error); try again")]
    BrowserError,
    #[error("the page script failed: {0}")]
    ScriptFailed(String),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("no browser is available")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

impl CaptureError {
    /// Every [`CaptureError::code`], so each `outcome` series of `shotfarm_captures_total` can
    /// exist (at zero) before its first event.
    pub const CODES: [&'static str; 17] = [
        "queue_full",
        "timeout",
        "navigation_failed",
        "target_http_error",
        "empty_page",
        "selector_not_found",
        "function_timeout",
        "invalid_selector",
        "pdf_no_pages",
        "output_too_large",
        "browser_crashed",
        "page_crashed",
        "browser_error",
        "script_error",
        "shutting_down",
        "unavailable",
        "internal",
    ];

    /// The stable machine-readable code, also the `outcome` label of `shotfarm_captures_total`.
    pub fn code(&self) -> &'static str {
        match self {
            CaptureError::QueueFull { .. } => "queue_full",
            CaptureError::Timeout => "timeout",
            CaptureError::NavigationFailed(_) => "navigation_failed",
            CaptureError::TargetHttpError(_) => "target_http_error",
            CaptureError::EmptyPage => "empty_page",
            CaptureError::SelectorNotFound(_) => "selector_not_found",
            CaptureError::FunctionTimeout => "function_timeout",
            CaptureError::InvalidSelector(_) => "invalid_selector",
            CaptureError::PdfNoPages => "pdf_no_pages",
            CaptureError::OutputTooLarge { .. } => "output_too_large",
            CaptureError::BrowserCrashed => "browser_crashed",
            CaptureError::PageCrashed => "page_crashed",
            CaptureError::BrowserError => "browser_error",
            CaptureError::ScriptFailed(_) => "script_error",
            CaptureError::ShuttingDown => "shutting_down",
            CaptureError::Unavailable => "unavailable",
            CaptureError::Internal(_) => "internal",
        }
    }
}

pub type CaptureResult = Result<CaptureOutput, CaptureError>;

/// One capture travelling through the queue. It cannot be built without a deadline.
#[derive(Debug)]
pub struct Job {
    /// The request id, carried into every log line of the job.
    pub id: String,
    pub spec: std::sync::Arc<CaptureSpec>,
    /// When the job must be answered, whatever happens.
    pub deadline: Instant,
    /// When the job (re-)entered the queue.
    pub enqueued_at: Instant,
    /// Queue time of earlier attempts.
    pub queued_before: Duration,
    /// 0 for the first attempt, 1 for the single retry after a browser died under it.
    pub attempt: u8,
    /// The browser (index, generation) that died under the first attempt: the retry must not go
    /// back to it, even if the supervisor has not yet heard that it is down.
    pub avoid: Option<(usize, u64)>,
    reply: Option<oneshot::Sender<CaptureResult>>,
}

/// A job is refused when less than this remains before its deadline.
pub const MIN_REMAINING: Duration = Duration::from_millis(50);

impl Job {
    /// A job and the receiver its result arrives on.
    pub fn new(
        id: String,
        spec: CaptureSpec,
        deadline: Instant,
    ) -> (Job, oneshot::Receiver<CaptureResult>) {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            id,
            spec: std::sync::Arc::new(spec),
            deadline,
            enqueued_at: Instant::now(),
            queued_before: Duration::ZERO,
            attempt: 0,
            avoid: None,
            reply: Some(tx),
        };
        (job, rx)
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Answers the job. Later calls do nothing: a job is answered exactly once.
    pub fn finish(&mut self, result: CaptureResult) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(result);
        }
    }

    /// True when the requester is no longer waiting (client gone).
    pub fn abandoned(&self) -> bool {
        self.reply.as_ref().is_none_or(|tx| tx.is_closed())
    }

    /// True when the job should not start any more: its deadline is (nearly) spent or nobody
    /// waits for it.
    pub fn expired(&self) -> bool {
        self.remaining() < MIN_REMAINING || self.abandoned()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // A job dropped on any path (a mailbox closed in shutdown, a task cancelled) still answers.
        self.finish(Err(CaptureError::Internal("job dropped unanswered".into())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_lists_every_capture_error_code_once() {
        let every = [
            CaptureError::QueueFull {
                retry_after: Duration::from_secs(1),
            },
            CaptureError::Timeout,
            CaptureError::NavigationFailed(String::new()),
            CaptureError::TargetHttpError(404),
            CaptureError::EmptyPage,
            CaptureError::SelectorNotFound(String::new()),
            CaptureError::FunctionTimeout,
            CaptureError::InvalidSelector(String::new()),
            CaptureError::PdfNoPages,
            CaptureError::OutputTooLarge { bytes: 2, limit: 1 },
            CaptureError::BrowserCrashed,
            CaptureError::PageCrashed,
            CaptureError::BrowserError,
            CaptureError::ScriptFailed(String::new()),
            CaptureError::ShuttingDown,
            CaptureError::Unavailable,
            CaptureError::Internal(String::new()),
        ];
        let codes: Vec<&str> = every.iter().map(CaptureError::code).collect();
        assert_eq!(codes, CaptureError::CODES);
    }
}
