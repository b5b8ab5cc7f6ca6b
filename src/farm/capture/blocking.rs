//! Requests the capture answers itself: `block_resources` (by type), `block_urls` (by
//! pattern), the filter lists (`block_ads`, `block_trackers`, `block_cookie_banners`), and an
//! `html` capture's own document. Requests are paused by Chromium's Fetch domain and answered on
//! a task that lives as long as the page (at most until the capture's deadline).
//!
//! - Without filter lists Chromium pauses only the requests that match a block pattern (and the
//!   html origin's); with them every request is paused and judged here, and the page's own
//!   document always goes on.
//! - A refused frame gets an empty document (not Chromium's error page, which would show in the
//!   shot); any other refused request fails as blocked by the client.
//! - The main frame's request for [`HTML_DOCUMENT_URL`] is answered with the markup; any other
//!   request to that origin is refused (none of them ever leaves the browser).

use std::sync::Arc;

use base64::Engine as _;

use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams as FetchEnableParams, EventRequestPaused,
    FailRequestParams, FulfillRequestParams, HeaderEntry, RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::FrameId;
use chromiumoxide::Page;
use futures::StreamExt;

use super::Result;
use crate::content_filters::{FilterEngines, Wanted};
use crate::farm::job::{CaptureSpec, ResourceKind, HTML_DOCUMENT_URL};

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

/// A request's type in the filter lists' words.
fn list_kind(kind: &ResourceType, main_frame: bool) -> &'static str {
    match kind {
        ResourceType::Document if main_frame => "document",
        ResourceType::Document => "subdocument",
        ResourceType::Stylesheet => "stylesheet",
        ResourceType::Image => "image",
        ResourceType::Media => "media",
        ResourceType::Font => "font",
        ResourceType::Script => "script",
        ResourceType::Xhr | ResourceType::Fetch | ResourceType::EventSource => "xmlhttprequest",
        ResourceType::WebSocket => "websocket",
        ResourceType::Ping => "ping",
        ResourceType::CspViolationReport => "csp_report",
        _ => "other",
    }
}

/// `block_urls` patterns (Fetch-domain wildcards: `*` any run of characters, `?` exactly one,
/// `\` escapes the next character), compiled once per capture into anchored regular expressions
/// (finite automata: no backtracking), judged against at most the first [`MAX_JUDGED_URL`] bytes
/// of a URL. A page cannot make the judging expensive, whatever the patterns.
struct UrlPatterns(Vec<regex::Regex>);

/// Longest part of a URL the patterns are matched against, in bytes (a longer URL is judged by
/// its beginning).
const MAX_JUDGED_URL: usize = 8 * 1024;

impl UrlPatterns {
    fn new(patterns: &[String]) -> UrlPatterns {
        let compiled = patterns
            .iter()
            .filter_map(|pattern| match regex::Regex::new(&expression(pattern)) {
                Ok(re) => Some(re),
                Err(e) => {
                    // Patterns are bounded by the option table (50 of at most 512 characters).
                    tracing::warn!("block_urls pattern not applied: {e}");
                    None
                }
            })
            .collect();
        UrlPatterns(compiled)
    }

    fn any_matches(&self, url: &str) -> bool {
        let mut end = url.len().min(MAX_JUDGED_URL);
        while !url.is_char_boundary(end) {
            end -= 1;
        }
        let judged = &url[..end];
        self.0.iter().any(|re| re.is_match(judged))
    }
}

/// A wildcard pattern as an anchored regular expression.
fn expression(pattern: &str) -> String {
    let mut expression = String::from("(?s)^");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => expression.push_str(".*"),
            '?' => expression.push('.'),
            '\\' => {
                if let Some(escaped) = chars.next() {
                    expression.push_str(&regex::escape(&escaped.to_string()));
                }
            }
            c => expression.push_str(&regex::escape(&c.to_string())),
        }
    }
    expression.push('$');
    expression
}

/// What a capture refuses, judged request by request (when the filter lists are on).
struct Judge {
    kinds: Vec<ResourceType>,
    patterns: UrlPatterns,
    lists: Arc<FilterEngines>,
    wanted: Wanted,
    main: FrameId,
    /// The URL of the main frame's document, the "page" the lists judge requests against.
    page_url: String,
}

impl Judge {
    fn refuses(&mut self, event: &EventRequestPaused) -> bool {
        let main_frame = event.frame_id == self.main;
        let url = event.request.url.as_str();
        if main_frame && event.resource_type == ResourceType::Document {
            // The page asked for (or where it redirects or moves to) is never refused by the
            // lists; a `block_urls` pattern refuses it as it does without lists.
            self.page_url.clone_from(&event.request.url);
            return self.patterns.any_matches(url);
        }
        self.kinds.contains(&event.resource_type)
            || self.patterns.any_matches(url)
            || self.lists.refuses(
                self.wanted,
                url,
                &self.page_url,
                list_kind(&event.resource_type, main_frame),
            )
    }
}

/// How a paused request is answered.
enum Answer {
    GoOn,
    Refuse,
    /// A refused frame: an empty document, so it stays blank instead of showing Chromium's
    /// error page in the shot.
    Blank,
    /// The html capture's document (the markup, base64).
    Serve(Arc<str>),
}

/// Starts answering what the capture asks to block, and its `html` document; nothing when it
/// asks for neither. The task ends with the page, and at the latest at the capture's deadline.
pub(super) async fn block_requests(
    page: &Page,
    spec: &CaptureSpec,
    lists: Option<Arc<FilterEngines>>,
    main: &FrameId,
    deadline: tokio::time::Instant,
) -> Result<()> {
    let lists = lists.filter(|_| spec.filters.any());
    if spec.block_resources.is_empty()
        && spec.block_urls.is_empty()
        && lists.is_none()
        && spec.html.is_none()
    {
        return Ok(());
    }
    let mut patterns: Vec<RequestPattern> = match lists {
        Some(_) => vec![pattern(Some("*".into()), None)],
        None => spec
            .block_resources
            .iter()
            .map(|&kind| pattern(Some("*".into()), Some(resource_type(kind))))
            .chain(
                spec.block_urls
                    .iter()
                    .map(|url| pattern(Some(url.clone()), None)),
            )
            .collect(),
    };
    // The html document's origin, every request to it (placed first: a request that matches
    // several patterns is paused once).
    let html: Option<Arc<str>> = spec.html.as_ref().map(|markup| {
        patterns.insert(0, pattern(Some(format!("{HTML_DOCUMENT_URL}*")), None));
        base64::engine::general_purpose::STANDARD
            .encode(markup.as_bytes())
            .into()
    });
    let main = main.clone();
    let mut judge = lists.map(|lists| Judge {
        kinds: spec
            .block_resources
            .iter()
            .map(|&k| resource_type(k))
            .collect(),
        patterns: UrlPatterns::new(&spec.block_urls),
        lists,
        wanted: spec.filters,
        main: main.clone(),
        page_url: spec.url.to_string(),
    });
    // Listening first, so no paused request is missed.
    let mut paused = page.event_listener::<EventRequestPaused>().await?;
    let answering = page.clone();
    tokio::spawn(tokio::time::timeout_at(deadline, async move {
        while let Some(event) = paused.next().await {
            let verdict = match &html {
                Some(markup) if event.request.url.starts_with(HTML_DOCUMENT_URL) => {
                    let document = event.resource_type == ResourceType::Document
                        && event.frame_id == main
                        && event.request.url == HTML_DOCUMENT_URL;
                    match document {
                        true => Answer::Serve(markup.clone()),
                        // A frame of the made-up origin stays blank, like any refused frame.
                        false if event.resource_type == ResourceType::Document => Answer::Blank,
                        false => Answer::Refuse,
                    }
                }
                // Without lists, Chromium paused only what a block pattern matched.
                _ if judge.as_mut().is_some_and(|judge| !judge.refuses(&event)) => Answer::GoOn,
                _ if event.resource_type == ResourceType::Document && event.frame_id != main => {
                    Answer::Blank
                }
                _ => Answer::Refuse,
            };
            // Answered concurrently: a request never waits for the answer to another.
            let page = answering.clone();
            tokio::spawn(async move {
                // An error means the page is gone (the capture ended): so is every request.
                let _ = answer(&page, &event, verdict).await;
            });
        }
    }));
    page.execute(FetchEnableParams {
        patterns: Some(patterns),
        handle_auth_requests: None,
    })
    .await?;
    Ok(())
}

fn pattern(url_pattern: Option<String>, resource_type: Option<ResourceType>) -> RequestPattern {
    RequestPattern {
        url_pattern,
        resource_type,
        request_stage: None,
    }
}

/// Lets a paused request go on, refuses it, or serves the html capture's document.
async fn answer(
    page: &Page,
    event: &EventRequestPaused,
    verdict: Answer,
) -> std::result::Result<(), chromiumoxide::error::CdpError> {
    let id = event.request_id.clone();
    let document = |body: Option<&str>| {
        let mut answer = FulfillRequestParams::new(id.clone(), 200);
        answer.response_headers = Some(vec![
            HeaderEntry::new("Content-Type", "text/html; charset=utf-8"),
            HeaderEntry::new("Cache-Control", "no-store"),
        ]);
        answer.body = body.map(|b| b.to_string().into());
        answer
    };
    match verdict {
        Answer::GoOn => page.execute(ContinueRequestParams::new(id)).await.map(drop),
        Answer::Serve(markup) => page.execute(document(Some(&markup))).await.map(drop),
        Answer::Blank => page.execute(document(None)).await.map(drop),
        Answer::Refuse => page
            .execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
            .await
            .map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::UrlPatterns;

    fn wildcard_match(pattern: &str, text: &str) -> bool {
        UrlPatterns::new(&[pattern.to_string()]).any_matches(text)
    }

    #[test]
    fn wildcards_match_as_the_fetch_domain_does() {
        for (pattern, text, matches) in [
            ("*", "https://a.example/x", true),
            ("*.png", "https://a.example/x.png", true),
            ("*.png", "https://a.example/x.png?v=1", false),
            ("*.png*", "https://a.example/x.png?v=1", true),
            ("https://a.example/*", "https://a.example/", true),
            ("https://a.example/*", "https://b.example/", false),
            ("*ads*", "https://cdn.example/ads/1.js", true),
            ("*ads*", "https://cdn.example/news/1.js", false),
            ("https://?.example/*", "https://a.example/x", true),
            ("https://?.example/*", "https://ab.example/x", false),
            (r"*\*literal*", "https://a.example/*literal", true),
            (r"*\*literal*", "https://a.example/xliteral", false),
            (r"*\?q=1", "https://a.example/?q=1", true),
            ("**a*b*", "xxaxxbxx", true),
            ("a*b*c", "abxbxc", true),
            ("a*b*c", "abxbx", false),
            ("(a)[b]{c}.+", "(a)[b]{c}.+", true),
            ("(a)[b]{c}.+", "(a)[b]{c}xx", false),
        ] {
            assert_eq!(wildcard_match(pattern, text), matches, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn a_long_url_against_hostile_patterns_is_judged_by_its_beginning() {
        // The shape that makes a backtracking matcher quadratic: stars before a long literal
        // that almost matches a long run of the same character.
        let hostile: Vec<String> = (0..50)
            .map(|i| format!("*{}b{i}", "a".repeat(500)))
            .collect();
        let patterns = UrlPatterns::new(&hostile);
        let url = format!("https://x.example/?{}", "a".repeat(2_000_000));
        assert!(!patterns.any_matches(&url));
        assert!(patterns.any_matches(&format!("https://x.example/?{}b7", "a".repeat(500))));
    }
}
