//! The option table: which capture options exist, their defaults, bounds and combinations,
//! read into a [`CaptureSpec`].

use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use super::devices;
use super::pdf;
use super::reader::Reader;
use super::spec::{MAX_BLOCK_URLS, MAX_CLICKS, MAX_SELECTOR, MAX_URL};
use super::{AsyncRequest, CacheAsk, CaptureRequest, ResponseType, StoreRequest};

use crate::api::errors::FieldError;
use crate::config::{is_object_name, CaptureConfig};
use crate::content_filters::Wanted;
use crate::farm::job::{
    Clip, Geolocation, ImageFormat, Media, ResourceKind, WaitUntil, HTML_DOCUMENT_URL,
};
use crate::farm::CaptureSpec;

/// Validates options against the configured caps. Each option, its type and its bounds are
/// described in `spec` (numbers' bounds and scripts' caps are read from there).
pub fn parse(
    map: Map<String, Value>,
    caps: &CaptureConfig,
) -> Result<CaptureRequest, Vec<FieldError>> {
    read(&mut Reader::new(map, caps), caps)
}

/// [`parse`] with the caller's reader, which keeps the record of the fields read.
pub(super) fn read(
    r: &mut Reader,
    caps: &CaptureConfig,
) -> Result<CaptureRequest, Vec<FieldError>> {
    let url = r
        .string("url")
        .and_then(|raw| r.check("url", parse_url(&raw)));
    let html = r
        .string("html")
        .and_then(|markup| r.check("html", check_html(markup, caps.max_html_bytes)));
    if html.is_some() && (url.is_some() || r.has_error("url")) {
        r.error("html", "cannot be combined with url: give one of them");
    }
    if url.is_none() && html.is_none() && !r.has_error("url") && !r.has_error("html") {
        r.error("url", "is required (or html, markup to render instead)");
    }
    let url = match html {
        Some(_) => Url::parse(HTML_DOCUMENT_URL).ok(),
        None => url,
    };
    let format = match r
        .string("format")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("png") => ImageFormat::Png,
        Some("jpeg") | Some("jpg") => ImageFormat::Jpeg,
        Some("webp") => ImageFormat::Webp,
        Some("pdf") => ImageFormat::Pdf,
        Some(_) => {
            r.error("format", "must be one of png, jpeg, webp, pdf");
            ImageFormat::Png
        }
    };
    // Options of the other kind of output: named, then set aside.
    let (refused, why) = if format == ImageFormat::Pdf {
        (&pdf::NOT_WITH_PDF[..], "does not apply to format=pdf")
    } else {
        (&pdf::PDF_OPTIONS[..], "applies to format=pdf only")
    };
    for field in refused {
        if pdf::given(&r.map, field) {
            r.error(field, why);
        }
        r.map.remove(*field);
    }
    let pdf = (format == ImageFormat::Pdf).then(|| pdf::read(r, caps.max_pdf_pages));
    let quality = r.uint("quality").map(|q| q as u8);
    if quality.is_some() && format == ImageFormat::Png {
        r.error("quality", "applies to jpeg and webp only");
    }
    let device = r.string("device").and_then(|name| {
        let found = devices::find(&name);
        if found.is_none() {
            r.error("device", &format!("must be one of {}", devices::names()));
        }
        found
    });
    // A device preset's size, scale and user agent, unless the request gives its own.
    let width = r
        .uint("width")
        .map_or(device.map_or(caps.default_width, |d| d.width), |v| v as u32);
    let height = r
        .uint("height")
        .map_or(device.map_or(caps.default_height, |d| d.height), |v| {
            v as u32
        });
    let device_scale_factor = r
        .float("device_scale_factor")
        .unwrap_or(device.map_or(1.0, |d| d.scale));
    let full_page = r.bool("full_page").unwrap_or(false);
    let selector = r.selector("selector");
    let clip = read_clip(r);
    if clip.is_some() && selector.is_some() {
        r.error("clip_width", "cannot be combined with selector");
    }
    if full_page && selector.is_some() {
        r.error("selector", "cannot be combined with full_page");
    }
    let wait_until = match r
        .string("wait_until")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("load") => WaitUntil::Load,
        Some("domcontentloaded") => WaitUntil::DomContentLoaded,
        Some("networkidle") => WaitUntil::NetworkIdle,
        Some(_) => {
            r.error(
                "wait_until",
                "must be one of load, domcontentloaded, networkidle",
            );
            WaitUntil::Load
        }
    };
    let wait_for_selector = r.selector("wait_for_selector");
    let delay = r.uint("delay").unwrap_or(0);
    let timeout = r.uint("timeout").unwrap_or(caps.default_timeout_ms);
    if delay >= timeout && !r.has_error("delay") && !r.has_error("timeout") {
        r.error("delay", "must be shorter than timeout");
    }
    let dark_mode = r.bool("dark_mode").unwrap_or(false);
    let hide_selectors = r.string_list("hide_selectors");
    for s in &hide_selectors {
        if s.is_empty() || s.len() > MAX_SELECTOR || s.contains(['{', '}']) {
            r.error(
                "hide_selectors",
                "each entry must be a CSS selector of 1 to 1024 characters without braces",
            );
            break;
        }
    }
    let css = r.script("css");
    let js = r.script("js");
    let user_agent = r
        .string("user_agent")
        .or_else(|| device.and_then(|d| d.user_agent).map(str::to_string));
    if let Some(ua) = &user_agent {
        if ua.is_empty() || ua.len() > 512 || ua.chars().any(char::is_control) {
            r.error("user_agent", "must be 1 to 512 printable characters");
        }
    }
    let headers = r.headers("headers");
    let cookies = r.cookies("cookies");
    let omit_background = r.bool("omit_background").unwrap_or(false);
    if omit_background && format == ImageFormat::Jpeg {
        r.error(
            "omit_background",
            "needs a format with transparency (png or webp)",
        );
    }
    let scroll_to_load = r.bool("scroll_to_load").unwrap_or(false);
    let allow_http_errors = r.bool("allow_http_errors").unwrap_or(false);
    let timezone = r
        .string("timezone")
        .and_then(|tz| r.check("timezone", check_timezone(&tz).map(|()| tz)));
    let locale = r
        .string("locale")
        .and_then(|l| r.check("locale", check_locale(&l).map(|()| l)));
    let latitude = r.float("geolocation_latitude");
    let longitude = r.float("geolocation_longitude");
    let accuracy = r.float("geolocation_accuracy");
    let geolocation = match (latitude, longitude) {
        (Some(latitude), Some(longitude)) => Some(Geolocation {
            latitude,
            longitude,
            accuracy: accuracy.unwrap_or(100.0),
        }),
        (None, None) if accuracy.is_none() => None,
        _ => {
            if !r.has_error("geolocation_latitude") && !r.has_error("geolocation_longitude") {
                r.error(
                    "geolocation_latitude",
                    "geolocation needs both geolocation_latitude and geolocation_longitude",
                );
            }
            None
        }
    };
    let reduced_motion = r.bool("reduced_motion").unwrap_or(false);
    let click = r.string_list("click");
    if click.len() > MAX_CLICKS {
        r.error("click", &format!("at most {MAX_CLICKS} selectors"));
    }
    if click.iter().any(|s| s.is_empty() || s.len() > MAX_SELECTOR) {
        r.error(
            "click",
            "each entry must be a CSS selector of 1 to 1024 characters",
        );
    }
    let scroll_to = r.selector("scroll_to");
    let mut block_resources = Vec::new();
    for name in r.string_list("block_resources") {
        match ResourceKind::named(&name) {
            Some(kind) if !block_resources.contains(&kind) => block_resources.push(kind),
            Some(_) => {}
            None => {
                let names: Vec<&str> = ResourceKind::NAMES.iter().map(|(n, _)| *n).collect();
                r.error(
                    "block_resources",
                    &format!("each entry must be one of {}", names.join(", ")),
                );
                break;
            }
        }
    }
    let block_urls = r.string_list("block_urls");
    if block_urls.len() > MAX_BLOCK_URLS {
        r.error("block_urls", &format!("at most {MAX_BLOCK_URLS} patterns"));
    }
    if block_urls
        .iter()
        .any(|p| p.is_empty() || p.len() > 512 || p.chars().any(char::is_control))
    {
        r.error(
            "block_urls",
            "each entry must be a URL pattern of 1 to 512 printable characters",
        );
    }
    let filters = Wanted {
        ads: r.bool("block_ads").unwrap_or(false),
        trackers: r.bool("block_trackers").unwrap_or(false),
        cookie_banners: r.bool("block_cookie_banners").unwrap_or(false),
    };
    let wait_for_function = r.script("wait_for_function");
    let media = match r.string("media").map(|s| s.to_ascii_lowercase()).as_deref() {
        None => None,
        Some("screen") => Some(Media::Screen),
        Some("print") => Some(Media::Print),
        Some(_) => {
            r.error("media", "must be screen or print");
            None
        }
    };
    let response_type = match r
        .string("response_type")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("binary") => ResponseType::Binary,
        Some("json") => ResponseType::Json,
        Some(_) => {
            r.error("response_type", "must be binary or json");
            ResponseType::Binary
        }
    };
    let cache = r.bool("cache");
    let cache_ttl = r.uint("cache_ttl").map(Duration::from_secs);
    let cache_key = r.string("cache_key").and_then(|k| {
        let ok = !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        r.check(
            "cache_key",
            if ok {
                Ok(k)
            } else {
                Err("must be 1 to 64 letters, digits, '.', '_' or '-'".to_string())
            },
        )
    });
    if cache == Some(false) && (cache_ttl.is_some() || cache_key.is_some()) {
        let field = if cache_ttl.is_some() {
            "cache_ttl"
        } else {
            "cache_key"
        };
        r.error(
            field,
            "applies only when the capture is cached (cache=true)",
        );
    }
    let store = read_store(r);
    let async_job = read_async(r, &cache, &store);
    let unknown: Vec<String> = r.map.keys().cloned().collect();
    for key in unknown {
        r.error(&key, "is not a known option");
    }

    match (url, r.errors.is_empty()) {
        (Some(url), true) => Ok(CaptureRequest {
            spec: CaptureSpec {
                url,
                html,
                pdf,
                format,
                quality,
                width,
                height,
                device_scale_factor,
                full_page,
                max_full_page_height: caps.max_full_page_height,
                max_output_bytes: caps.max_output_bytes,
                selector,
                wait_until,
                wait_for_selector,
                delay: Duration::from_millis(delay),
                dark_mode,
                hide_selectors,
                css,
                js,
                user_agent,
                headers,
                cookies,
                omit_background,
                scroll_to_load,
                allow_http_errors,
                mobile: device.is_some_and(|d| d.mobile),
                touch: device.is_some_and(|d| d.touch),
                timezone,
                locale,
                geolocation,
                reduced_motion,
                media,
                click,
                scroll_to,
                wait_for_function,
                clip,
                page_info: response_type == ResponseType::Json,
                block_resources,
                block_urls,
                filters,
            },
            timeout: Duration::from_millis(timeout),
            response_type,
            cache: CacheAsk {
                wanted: cache,
                ttl: cache_ttl,
                key: cache_key,
            },
            store,
            async_job,
        }),
        _ => Err(std::mem::take(&mut r.errors)),
    }
}

fn parse_url(raw: &str) -> Result<Url, String> {
    if raw.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".into());
    }
    Ok(url)
}

/// Markup to render: not blank, at most `max` bytes.
fn check_html(markup: String, max: usize) -> Result<String, String> {
    if markup.len() > max {
        return Err(format!(
            "must be at most {max} bytes (capture.max_html_bytes); it is {}",
            markup.len()
        ));
    }
    if markup.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(markup)
}

/// Where the host keeps its time zone database (Debian's `tzdata`).
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// An IANA time zone name the host knows (`Europe/Berlin`, `UTC`): a zone file of its database
/// (TZif), outside the `posix/` and `right/` copies, `posixrules` and `localtime` (the host's
/// own setting), which Chromium's time zone override does not take (they failed the capture on
/// both browsers with 503 `browser_error`). Every other zone of Debian's tzdata was captured.
fn check_timezone(tz: &str) -> Result<(), String> {
    let shaped = !tz.is_empty()
        && tz.len() <= 64
        && !tz.starts_with('/')
        && tz
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    let not_a_zone = matches!(tz, "posixrules" | "localtime")
        || tz.starts_with("posix/")
        || tz.starts_with("right/");
    if shaped && !not_a_zone && is_zone_file(&std::path::Path::new(ZONEINFO).join(tz)) {
        Ok(())
    } else {
        Err("must be an IANA time zone name, such as Europe/Berlin or UTC".into())
    }
}

/// A compiled zone file (it starts with `TZif`), not one of the database's text files.
fn is_zone_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"TZif")
}

/// A BCP 47 language tag as ICU (and so Chromium's locale override) takes it: a 2–3 letter
/// language, then optionally a 4-letter script, a region (2 letters or 3 digits) and a variant
/// (5–8 letters or digits, or a digit and 3 more), in that order (`de`, `de-DE`, `zh-Hant-TW`,
/// `es-419`, `de-DE-1996`). Other shapes (`en-q0`, `en-abc`) made Chromium fail the capture.
fn check_locale(locale: &str) -> Result<(), String> {
    let alpha = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphabetic())
    };
    let mut parts = locale.split('-').peekable();
    let mut ok = parts.next().is_some_and(|l| alpha(l, 2..=3));
    if parts.peek().is_some_and(|p| alpha(p, 4..=4)) {
        parts.next();
    }
    if parts
        .peek()
        .is_some_and(|p| alpha(p, 2..=2) || (p.len() == 3 && p.chars().all(|c| c.is_ascii_digit())))
    {
        parts.next();
    }
    if let Some(variant) = parts.next() {
        let alnum = variant.chars().all(|c| c.is_ascii_alphanumeric());
        ok &= alnum
            && ((5..=8).contains(&variant.len())
                || (variant.len() == 4 && variant.starts_with(|c: char| c.is_ascii_digit())));
    }
    if ok && parts.next().is_none() {
        Ok(())
    } else {
        Err("must be a BCP 47 language tag, such as en-US or de-DE".into())
    }
}

/// `store` and `store_path`: upload the capture instead of answering it (whether this server
/// has storage is the route's to say).
fn read_store(r: &mut Reader) -> Option<StoreRequest> {
    let store = r.bool("store").unwrap_or(false);
    let path = r.string("store_path");
    match &path {
        Some(p) if !is_object_name(p) => r.error(
            "store_path",
            "must be a relative object name of at most 512 bytes: segments of letters, digits, \
             `_` and `-` with single dots between them, joined by `/` (no `..`, no leading `/`)",
        ),
        Some(_) if !store => r.error("store_path", "applies with store=true only"),
        _ => {}
    }
    store.then_some(StoreRequest { path })
}

/// `async` and `webhook_url`: run the capture as a job and POST its result to the URL (whether
/// that URL may be reached is the route's to say, with the egress policy). Not with `cache=true`
/// or `store=true`: an async job's image is kept with the job.
fn read_async(
    r: &mut Reader,
    cache: &Option<bool>,
    store: &Option<StoreRequest>,
) -> Option<AsyncRequest> {
    let wanted = r.bool("async").unwrap_or(false);
    let webhook = r
        .string("webhook_url")
        .and_then(|raw| r.check("webhook_url", parse_url(&raw)));
    if !wanted {
        if webhook.is_some() {
            r.error("webhook_url", "applies with async=true only");
        }
        return None;
    }
    if *cache == Some(true) {
        r.error(
            "cache",
            "cannot be combined with async=true (an async job keeps its own image)",
        );
    }
    if store.is_some() {
        r.error(
            "store",
            "cannot be combined with async=true (an async job keeps its own image)",
        );
    }
    match webhook {
        Some(webhook_url) => Some(AsyncRequest { webhook_url }),
        None => {
            if !r.has_error("webhook_url") {
                r.error("webhook_url", "is required with async=true");
            }
            None
        }
    }
}

/// `clip_x`, `clip_y` (default 0), `clip_width`, `clip_height`: all or none of the size.
fn read_clip(r: &mut Reader) -> Option<Clip> {
    let x = r.float("clip_x");
    let y = r.float("clip_y");
    let width = r.float("clip_width");
    let height = r.float("clip_height");
    match (width, height) {
        (Some(width), Some(height)) => Some(Clip {
            x: x.unwrap_or(0.0),
            y: y.unwrap_or(0.0),
            width,
            height,
        }),
        (None, None) if x.is_none() && y.is_none() => None,
        _ => {
            if !r.has_error("clip_width") && !r.has_error("clip_height") {
                r.error("clip_width", "a clip needs both clip_width and clip_height");
            }
            None
        }
    }
}
