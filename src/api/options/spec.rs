//! Every capture option as data: its name, JSON type, bounds, enum values, default and a
//! one-line description. The one description of the options that both sides use:
//!
//! - the parser (`table::parse`, through `reader`) takes each number's bounds and each
//!   script's size cap from here, so they cannot differ from what is documented;
//! - the OpenAPI document (`api::openapi`) is generated from it;
//! - the tests below check the rest against the parser: it reads exactly the options listed
//!   here, each with a reader of the documented type, accepts every documented enum value and
//!   bound and refuses a value just outside, naming the field.
//!
//! A new option is one entry in [`OPTIONS`]; the tests name any option the parser reads that
//! is missing here.

use crate::config::{CaptureConfig, OBJECT_NAME_PATTERN};
use crate::farm::job::ResourceKind;

use super::devices;

/// A bound: fixed, or one of the operator's caps (`[capture]` in the config).
#[derive(Clone, Copy)]
pub enum Limit {
    Fixed(f64),
    Cap(fn(&CaptureConfig) -> f64),
}

impl Limit {
    pub fn of(self, caps: &CaptureConfig) -> f64 {
        match self {
            Limit::Fixed(v) => v,
            Limit::Cap(cap) => cap(caps),
        }
    }
}

/// Names an option accepts, as the API spells them (the parser compares case-insensitively).
pub type Names = fn() -> Vec<&'static str>;

/// One entry of a list option.
#[derive(Clone, Copy)]
pub enum Item {
    /// A string of 1 to `max_len` bytes, matching `pattern` when there is one.
    Text {
        max_len: usize,
        pattern: Option<&'static str>,
    },
    /// One of these names.
    OneOf(Names),
}

/// What an option's value is.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A string of `min_len` to `max_len` bytes; `format` as OpenAPI names it (`uri`); every
    /// value the parser accepts matches `pattern` (an ECMA-262 regular expression).
    Text {
        min_len: usize,
        max_len: Limit,
        format: Option<&'static str>,
        pattern: Option<&'static str>,
    },
    Boolean,
    /// A whole number from `min` to `max`.
    Integer {
        min: Limit,
        max: Limit,
    },
    /// A number from `min` to `max`.
    Number {
        min: Limit,
        max: Limit,
    },
    /// One of `values` (and the accepted `aliases`).
    OneOf {
        values: Names,
        aliases: &'static [&'static str],
    },
    /// A list (a repeated query parameter) of at most `max_items`.
    List {
        max_items: usize,
        item: Item,
    },
    /// `{"Name": "value"}` in JSON; `Name: value` strings as query parameters.
    Headers {
        max_items: usize,
    },
    /// Cookie objects or `name=value` strings.
    Cookies {
        max_items: usize,
    },
}

/// What an absent option means.
#[derive(Clone, Copy)]
pub enum DefaultValue {
    /// Nothing (the option is off, or the browser's own behaviour applies).
    None,
    Bool(bool),
    Number(Limit),
    Text(&'static str),
}

/// One capture option.
#[derive(Clone, Copy)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub default: DefaultValue,
    pub description: &'static str,
}

/// The option named `name`.
pub fn find(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

const fn text(max_len: usize) -> Kind {
    text_matching(max_len, None)
}

const fn text_matching(max_len: usize, pattern: Option<&'static str>) -> Kind {
    Kind::Text {
        min_len: 1,
        max_len: Limit::Fixed(max_len as f64),
        format: None,
        pattern,
    }
}

/// No control characters (what `char::is_control` finds: Unicode's Cc).
/// A PDF length: a number, optionally with a unit.
pub const PDF_LENGTH: &str = "^\\s*[0-9]*\\.?[0-9]+\\s*(mm|cm|in|px)?\\s*$";
/// PDF page ranges: numbers and ranges, comma-separated.
pub const PDF_RANGES: &str =
    "^\\s*[0-9]+(\\s*-\\s*[0-9]+)?(\\s*,\\s*[0-9]+(\\s*-\\s*[0-9]+)?)*\\s*$";
/// A `cache_key`: letters, digits, `.`, `_` and `-`.
pub const CACHE_KEY: &str = "^[A-Za-z0-9._-]+$";
/// Longest `cache_ttl` any server accepts (a year); each server caps it lower
/// (`cache.max_ttl_secs`).
pub const MAX_CACHE_TTL: u64 = 31_536_000;
pub const PRINTABLE: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]+$";
/// An HTTP header name (a token).
pub const HEADER_NAME: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
/// A header value: no control characters but tab.
pub const HEADER_VALUE: &str = "^[^\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f]*$";
/// `Name: value`, as the `headers` query parameter takes it.
pub const HEADER_LINE: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f]*$";
/// A cookie's name.
pub const COOKIE_NAME: &str = "^[^;=, \\x00-\\x1f\\x7f-\\x9f]+$";
/// A cookie's value.
pub const COOKIE_VALUE: &str = "^[^;\\x00-\\x1f\\x7f-\\x9f]*$";
/// `name=value`, as the `cookies` query parameter takes it.
pub const COOKIE_LINE: &str = "^[^;=, \\x00-\\x1f\\x7f-\\x9f]+=[^;\\x00-\\x1f\\x7f-\\x9f]*$";

const fn int(min: f64, max: Limit) -> Kind {
    Kind::Integer {
        min: Limit::Fixed(min),
        max,
    }
}

const fn number(min: f64, max: Limit) -> Kind {
    Kind::Number {
        min: Limit::Fixed(min),
        max,
    }
}

const SELECTOR: Kind = text(MAX_SELECTOR);

const SCRIPT: Kind = Kind::Text {
    min_len: 0,
    max_len: Limit::Cap(|c| c.max_script_bytes as f64),
    format: None,
    pattern: None,
};

const fn option(
    name: &'static str,
    kind: Kind,
    default: DefaultValue,
    description: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        kind,
        default,
        description,
    }
}

use DefaultValue as D;

/// Longest `url`, in bytes.
/// Longest CSS selector, in characters.
pub const MAX_SELECTOR: usize = 1024;
/// Most entries of a list option.
pub const MAX_LIST: usize = 50;
pub const MAX_URL: usize = 4096;
/// Most elements one capture may click.
pub const MAX_CLICKS: usize = 10;
/// Most URL patterns one capture may block.
pub const MAX_BLOCK_URLS: usize = 50;

/// An http(s) URL option (`url`, `webhook_url`).
const URL_TEXT: Kind = Kind::Text {
    min_len: 1,
    max_len: Limit::Fixed(MAX_URL as f64),
    format: Some("uri"),
    pattern: None,
};

/// Every capture option, in the order the README's table lists them.
pub const OPTIONS: &[OptionSpec] = &[
    option(
        "url",
        URL_TEXT,
        D::None,
        "The http or https page to capture (this or `html` is required); it (and every address the page loads) must pass the egress policy.",
    ),
    option(
        "html",
        Kind::Text {
            min_len: 1,
            max_len: Limit::Cap(|c| c.max_html_bytes as f64),
            format: None,
            pattern: None,
        },
        D::None,
        "Markup to render instead of `url` (not both); its subresources pass the egress policy like any page's.",
    ),
    option(
        "format",
        Kind::OneOf {
            values: || vec!["png", "jpeg", "webp", "pdf"],
            aliases: &["jpg"],
        },
        D::Text("png"),
        "Output format (`jpg` is accepted for `jpeg`); `pdf` prints the page (the `pdf_*` options).",
    ),
    option(
        "quality",
        int(1.0, Limit::Fixed(100.0)),
        D::Number(Limit::Fixed(80.0)),
        "Encoder quality, jpeg and webp only.",
    ),
    option(
        "width",
        int(1.0, Limit::Cap(|c| f64::from(c.max_width))),
        D::Number(Limit::Cap(|c| f64::from(c.default_width))),
        "Viewport width in CSS pixels (default: the device's, else the server's default).",
    ),
    option(
        "height",
        int(1.0, Limit::Cap(|c| f64::from(c.max_height))),
        D::Number(Limit::Cap(|c| f64::from(c.default_height))),
        "Viewport height in CSS pixels (default: the device's, else the server's default).",
    ),
    option(
        "device_scale_factor",
        number(1.0, Limit::Fixed(3.0)),
        D::Number(Limit::Fixed(1.0)),
        "Pixel density (default: the device's, else 1).",
    ),
    option(
        "full_page",
        Kind::Boolean,
        D::Bool(false),
        "Capture the whole page, cut at the server's maximum full-page height; not with selector.",
    ),
    option(
        "selector",
        SELECTOR,
        D::None,
        "Capture the one element this CSS selector matches (404 selector_not_found if none does).",
    ),
    option(
        "clip_x",
        number(0.0, Limit::Cap(|c| f64::from(c.max_width))),
        D::Number(Limit::Fixed(0.0)),
        "Left edge of the clip rectangle, in CSS pixels of the page.",
    ),
    option(
        "clip_y",
        number(0.0, Limit::Cap(|c| f64::from(c.max_full_page_height))),
        D::Number(Limit::Fixed(0.0)),
        "Top edge of the clip rectangle, in CSS pixels of the page.",
    ),
    option(
        "clip_width",
        number(1.0, Limit::Cap(|c| f64::from(c.max_width))),
        D::None,
        "Width of the clip rectangle; with clip_height, captures only that rectangle (not with selector).",
    ),
    option(
        "clip_height",
        number(1.0, Limit::Cap(|c| f64::from(c.max_full_page_height))),
        D::None,
        "Height of the clip rectangle; with clip_width.",
    ),
    option(
        "wait_until",
        Kind::OneOf {
            values: || vec!["load", "domcontentloaded", "networkidle"],
            aliases: &[],
        },
        D::Text("load"),
        "The navigation event to wait for.",
    ),
    option(
        "wait_for_selector",
        SELECTOR,
        D::None,
        "Wait until this CSS selector matches (404 selector_not_found if it never does).",
    ),
    option(
        "delay",
        int(0.0, Limit::Cap(|c| c.max_delay_ms as f64)),
        D::Number(Limit::Fixed(0.0)),
        "Extra wait before the capture, in milliseconds; shorter than timeout.",
    ),
    option(
        "timeout",
        int(100.0, Limit::Cap(|c| c.max_timeout_ms as f64)),
        D::Number(Limit::Cap(|c| c.default_timeout_ms as f64)),
        "Deadline of the whole capture, in milliseconds (504 timeout past it).",
    ),
    option(
        "dark_mode",
        Kind::Boolean,
        D::Bool(false),
        "Emulate prefers-color-scheme: dark.",
    ),
    option(
        "hide_selectors",
        Kind::List {
            max_items: MAX_LIST,
            item: Item::Text {
                max_len: MAX_SELECTOR,
                pattern: Some("^[^{}]+$"),
            },
        },
        D::None,
        "CSS selectors (without braces) of elements hidden with visibility: hidden.",
    ),
    option(
        "css",
        SCRIPT,
        D::None,
        "A stylesheet injected before the capture.",
    ),
    option(
        "js",
        SCRIPT,
        D::None,
        "A script run (and awaited) before the capture; a throw is 400 script_error.",
    ),
    option(
        "user_agent",
        text_matching(512, Some(PRINTABLE)),
        D::None,
        "User agent override, 1 to 512 printable characters (default: the device's, else Chromium's).",
    ),
    option(
        "headers",
        Kind::Headers {
            max_items: MAX_LIST,
        },
        D::None,
        "Extra request headers sent with every request the page makes (not Host, Content-Length, Connection, Transfer-Encoding, Upgrade, TE, Trailer, Keep-Alive or Proxy-Connection).",
    ),
    option(
        "cookies",
        Kind::Cookies {
            max_items: MAX_LIST,
        },
        D::None,
        "Cookies for the page (default scope: the URL); a name and value of at most 4096 bytes together; `__Secure-` and `__Host-` names follow their prefix rules.",
    ),
    option(
        "omit_background",
        Kind::Boolean,
        D::Bool(false),
        "Transparent background (png or webp).",
    ),
    option(
        "scroll_to_load",
        Kind::Boolean,
        D::Bool(false),
        "Scroll through the page first so lazy content loads.",
    ),
    option(
        "device",
        Kind::OneOf {
            values: || devices::DEVICES.iter().map(|d| d.name).collect(),
            aliases: &[],
        },
        D::None,
        "A phone, tablet or desktop preset: viewport, scale, user agent, mobile layout and touch.",
    ),
    option(
        "timezone",
        text_matching(64, Some("^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")),
        D::None,
        "IANA time zone of the page's clock (Europe/Berlin, UTC); default: the host's.",
    ),
    option(
        "locale",
        text_matching(
            30,
            Some("^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-([A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))?$"),
        ),
        D::None,
        "BCP 47 language tag for navigator.language, Intl and Accept-Language (de-DE).",
    ),
    option(
        "geolocation_latitude",
        number(-90.0, Limit::Fixed(90.0)),
        D::None,
        "Latitude the page's geolocation API reports, in degrees; with geolocation_longitude.",
    ),
    option(
        "geolocation_longitude",
        number(-180.0, Limit::Fixed(180.0)),
        D::None,
        "Longitude the page's geolocation API reports, in degrees; with geolocation_latitude.",
    ),
    option(
        "geolocation_accuracy",
        number(0.0, Limit::Fixed(100_000.0)),
        D::Number(Limit::Fixed(100.0)),
        "Accuracy of the reported position, in metres.",
    ),
    option(
        "reduced_motion",
        Kind::Boolean,
        D::Bool(false),
        "Emulate prefers-reduced-motion: reduce.",
    ),
    option(
        "media",
        Kind::OneOf {
            values: || vec!["screen", "print"],
            aliases: &[],
        },
        D::Text("screen"),
        "The CSS media type the page is rendered for.",
    ),
    option(
        "click",
        Kind::List {
            max_items: MAX_CLICKS,
            item: Item::Text {
                max_len: MAX_SELECTOR,
                pattern: None,
            },
        },
        D::None,
        "CSS selectors of elements clicked in this order before the capture.",
    ),
    option(
        "scroll_to",
        SELECTOR,
        D::None,
        "A CSS selector of an element scrolled to the top of the viewport before the capture.",
    ),
    option(
        "wait_for_function",
        SCRIPT,
        D::None,
        "A JavaScript expression polled until truthy (422 function_timeout if it never is).",
    ),
    option(
        "block_resources",
        Kind::List {
            max_items: MAX_LIST,
            item: Item::OneOf(|| ResourceKind::NAMES.iter().map(|(n, _)| *n).collect()),
        },
        D::None,
        "Kinds of requests that fail in the page and never leave the browser.",
    ),
    option(
        "block_urls",
        Kind::List {
            max_items: MAX_BLOCK_URLS,
            item: Item::Text {
                max_len: 512,
                pattern: Some(PRINTABLE),
            },
        },
        D::None,
        "URL patterns (`*` any run, `?` one character) whose requests fail in the page.",
    ),
    option(
        "block_ads",
        Kind::Boolean,
        D::Bool(false),
        "EasyList: ad requests never leave the browser, and the elements it names are hidden.",
    ),
    option(
        "block_trackers",
        Kind::Boolean,
        D::Bool(false),
        "EasyPrivacy: tracker requests never leave the browser.",
    ),
    option(
        "block_cookie_banners",
        Kind::Boolean,
        D::Bool(false),
        "Consent dialogs of the common consent platforms are refused and hidden (plus the operator's own lists).",
    ),
    option(
        "pdf_paper",
        Kind::OneOf {
            values: || vec!["letter", "legal", "tabloid", "ledger", "a0", "a1", "a2", "a3", "a4", "a5", "a6"],
            aliases: &[],
        },
        D::Text("letter"),
        "format=pdf: a named paper size (not with pdf_width/pdf_height).",
    ),
    option(
        "pdf_width",
        text_matching(32, Some(PDF_LENGTH)),
        D::None,
        "format=pdf: paper width, a number with a unit (`mm`, `cm`, `in`, `px`; none: CSS px), 0.5–50 in; with pdf_height.",
    ),
    option(
        "pdf_height",
        text_matching(32, Some(PDF_LENGTH)),
        D::None,
        "format=pdf: paper height, as pdf_width; with pdf_width.",
    ),
    option(
        "pdf_landscape",
        Kind::Boolean,
        D::Bool(false),
        "format=pdf: the paper turned.",
    ),
    option(
        "pdf_margin",
        text_matching(32, Some(PDF_LENGTH)),
        D::None,
        "format=pdf: all four margins, a length as pdf_width (default: Chromium's 1 cm).",
    ),
    option(
        "pdf_margin_top",
        text_matching(32, Some(PDF_LENGTH)),
        D::None,
        "format=pdf: the top margin (the sides not given are 0).",
    ),
    option(
        "pdf_margin_right",
        text_matching(32, Some(PDF_LENGTH)),
        D::None,
        "format=pdf: the right margin.",
    ),
    option(
        "pdf_margin_bottom",
        text_matching(32, Some(PDF_LENGTH)),
        D::None,
        "format=pdf: the bottom margin.",
    ),
    option(
        "pdf_margin_left",
        text_matching(32, Some(PDF_LENGTH)),
        D::None,
        "format=pdf: the left margin.",
    ),
    option(
        "pdf_print_background",
        Kind::Boolean,
        D::Bool(true),
        "format=pdf: print background colours and images.",
    ),
    option(
        "pdf_scale",
        number(0.1, Limit::Fixed(2.0)),
        D::Number(Limit::Fixed(1.0)),
        "format=pdf: the page's scale on paper.",
    ),
    option(
        "pdf_page_ranges",
        text_matching(256, Some(PDF_RANGES)),
        D::None,
        "format=pdf: pages to print (`1-3,5`), ascending; at most the server's page cap in all (default: the first pages up to it).",
    ),
    option(
        "allow_http_errors",
        Kind::Boolean,
        D::Bool(false),
        "Capture (and charge) a page whose main document answered an HTTP error; off, it fails free as target_http_error.",
    ),
    option(
        "cache",
        Kind::Boolean,
        D::None,
        "Serve this capture from the cache when the same one (same account, every option that changes the image) was made within its lifetime: a hit is free, answered with x-cache: hit. Default: the server's cache.default_on.",
    ),
    option(
        "cache_ttl",
        int(1.0, Limit::Fixed(MAX_CACHE_TTL as f64)),
        D::None,
        "With cache: how long the entry this capture fills is served, in seconds (default and cap: the server's cache.default_ttl_secs and cache.max_ttl_secs).",
    ),
    option(
        "cache_key",
        text_matching(64, Some(CACHE_KEY)),
        D::None,
        "With cache: your own tag of the entry; another value, another entry (a way to refresh one).",
    ),
    option(
        "store",
        Kind::Boolean,
        D::Bool(false),
        "Upload the capture to the server's S3-compatible bucket and answer JSON with its URL instead of the image (400 when the server has no storage; an upload that fails is 502 storage_failed, not charged).",
    ),
    option(
        "store_path",
        text_matching(512, Some(OBJECT_NAME_PATTERN)),
        D::None,
        "With store=true: the object's name inside the account's folder (`2026/home.png`): words of letters, digits, `_` and `-` with single dots between them, joined by `/`; default a random `<uuid>.<ext>`. An object of the same name is replaced.",
    ),
    option(
        "async",
        Kind::Boolean,
        D::Bool(false),
        "Run the capture as a job: answered 202 with the job's id at once; the result is POSTed (Standard Webhooks-signed with the account's notification secret) to webhook_url and shown at /api/v1/screenshots/{id}. Charged once, when the image exists; a failure is free. Not with cache=true or store=true.",
    ),
    option(
        "webhook_url",
        URL_TEXT,
        D::None,
        "With async=true (required there): the http(s) URL the job's result is POSTed to; it must pass the server's egress policy, like every URL the server fetches.",
    ),
    option(
        "response_type",
        Kind::OneOf {
            values: || vec!["binary", "json"],
            aliases: &[],
        },
        D::Text("binary"),
        "binary: the image itself; json: the image in base64 with its size, timings and what the page said.",
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{json, Map, Value};

    use super::super::reader::{Access, Reader};
    use super::super::table;
    use super::*;
    use crate::api::errors::FieldError;

    const HERE: &str = "src/api/options/spec.rs";

    /// The default caps and a set where every cap differs, so a bound that should follow the
    /// config but is fixed (or the reverse) is found.
    fn caps_sets() -> [CaptureConfig; 2] {
        let other = CaptureConfig {
            max_width: 2000,
            max_height: 1500,
            max_full_page_height: 9000,
            max_delay_ms: 4000,
            max_timeout_ms: 20_000,
            default_timeout_ms: 15_000,
            default_width: 1000,
            default_height: 700,
            max_script_bytes: 1000,
            ..CaptureConfig::default()
        };
        [CaptureConfig::default(), other]
    }

    /// Reads `options` as `parse` does: the errors, and every field the parser read.
    fn run(options: Value, caps: &CaptureConfig) -> (Vec<FieldError>, Vec<(&'static str, Access)>) {
        let Value::Object(map) = options else {
            panic!("test options must be an object")
        };
        let mut r = Reader::new(map, caps);
        let errors = table::read(&mut r, caps).err().unwrap_or_default();
        (errors, r.read)
    }

    /// The other options an option needs to be accepted at all (a clip needs both sizes, a
    /// quality a lossy format…). An option added with such a rule needs its line here.
    fn companions(name: &str) -> Value {
        match name {
            "quality" => json!({"format": "jpeg"}),
            n if n.starts_with("pdf_") => match n {
                // A size needs both sides.
                "pdf_width" => json!({"format": "pdf", "pdf_height": "11in"}),
                "pdf_height" => json!({"format": "pdf", "pdf_width": "8.5in"}),
                _ => json!({"format": "pdf"}),
            },
            "clip_x" | "clip_y" => json!({"clip_width": 10, "clip_height": 10}),
            "clip_width" => json!({"clip_height": 10}),
            "clip_height" => json!({"clip_width": 10}),
            "geolocation_latitude" => json!({"geolocation_longitude": 0}),
            "geolocation_longitude" => json!({"geolocation_latitude": 0}),
            "geolocation_accuracy" => {
                json!({"geolocation_latitude": 0, "geolocation_longitude": 0})
            }
            "store_path" => json!({"store": true}),
            "webhook_url" => json!({"async": true}),
            "async" => json!({"webhook_url": "https://hooks.example.com/shot"}),
            // The longest delay must still be shorter than the timeout.
            "delay" => json!({"timeout": "max"}),
            _ => json!({}),
        }
    }

    /// A request with `name` set to `value`, its companions and a URL.
    fn with(name: &str, value: Value, caps: &CaptureConfig) -> Value {
        let mut map = Map::new();
        map.insert("url".into(), json!("https://example.com/"));
        if let Value::Object(extra) = companions(name) {
            for (k, v) in extra {
                let v = if v == json!("max") {
                    match find(&k).map(|o| o.kind) {
                        Some(Kind::Integer { max, .. }) => json!(max.of(caps) as u64),
                        _ => v,
                    }
                } else {
                    v
                };
                map.insert(k, v);
            }
        }
        // `webhook_url` goes with async=true only.
        if name == "async" && value == json!(false) {
            map.remove("webhook_url");
        }
        map.insert(name.to_string(), value);
        Value::Object(map)
    }

    fn accepted(name: &str, value: Value, caps: &CaptureConfig) {
        let (errors, _) = run(with(name, value.clone(), caps), caps);
        assert!(
            errors.is_empty(),
            "`{name}` = {value} is documented in {HERE} as valid, but the parser refused it: \
             {errors:?} (if the option needs others, add them to companions() in {HERE})"
        );
    }

    fn refused(name: &str, value: Value, caps: &CaptureConfig) {
        let (errors, _) = run(with(name, value.clone(), caps), caps);
        assert!(
            errors.iter().any(|e| e.field == name),
            "`{name}` = {value} is outside what {HERE} documents, but the parser did not refuse \
             it naming `{name}`: {errors:?}"
        );
    }

    /// Every field the parser reads, over requests that take each documented enum value (so an
    /// option read only with, say, `format=pdf` is found too).
    fn fields_read(caps: &CaptureConfig) -> Vec<(&'static str, Access)> {
        let mut inputs = vec![json!({"url": "https://example.com/"})];
        for o in OPTIONS {
            if let Kind::OneOf { values, .. } = o.kind {
                for v in values() {
                    inputs.push(with(o.name, json!(v), caps));
                }
            }
        }
        let mut read: Vec<(&'static str, Access)> = Vec::new();
        for input in inputs {
            for (name, access) in run(input, caps).1 {
                if !read.iter().any(|(n, _)| *n == name) {
                    read.push((name, access));
                }
            }
        }
        read
    }

    #[test]
    fn the_parser_reads_exactly_the_documented_options() {
        let caps = CaptureConfig::default();
        let read = fields_read(&caps);
        let read_names: BTreeSet<&str> = read.iter().map(|(n, _)| *n).collect();
        for name in &read_names {
            assert!(
                find(name).is_some(),
                "capture option `{name}` is read by the parser (src/api/options/table.rs) but is \
                 not documented: add it to OPTIONS in {HERE} (type, bounds, default, one line), \
                 so the OpenAPI document and the README describe it"
            );
        }
        for o in OPTIONS {
            assert!(
                read_names.contains(o.name),
                "capture option `{}` is documented in {HERE} but the parser never reads it",
                o.name
            );
        }
        let mut names = BTreeSet::new();
        for o in OPTIONS {
            assert!(names.insert(o.name), "`{}` is documented twice", o.name);
        }
    }

    #[test]
    fn each_option_is_read_as_its_documented_type() {
        let caps = CaptureConfig::default();
        for (name, access) in fields_read(&caps) {
            let Some(o) = find(name) else { continue };
            let expected = match o.kind {
                Kind::Text { .. } | Kind::OneOf { .. } => Access::Text,
                Kind::Boolean => Access::Bool,
                Kind::Integer { .. } => Access::Integer,
                Kind::Number { .. } => Access::Number,
                Kind::List { .. } => Access::List,
                Kind::Headers { .. } => Access::Headers,
                Kind::Cookies { .. } => Access::Cookies,
            };
            assert_eq!(
                access, expected,
                "`{name}` is read as {access:?} but documented in {HERE} as {expected:?}"
            );
        }
    }

    #[test]
    fn every_documented_value_is_accepted_and_others_are_refused() {
        let caps = CaptureConfig::default();
        for o in OPTIONS {
            match o.kind {
                Kind::OneOf { values, aliases } => {
                    for v in values().into_iter().chain(aliases.iter().copied()) {
                        accepted(o.name, json!(v), &caps);
                    }
                    refused(o.name, json!("no-such-value"), &caps);
                }
                Kind::List {
                    item: Item::OneOf(values),
                    ..
                } => {
                    for v in values() {
                        accepted(o.name, json!([v]), &caps);
                    }
                    refused(o.name, json!(["no-such-value"]), &caps);
                }
                Kind::Boolean => {
                    accepted(o.name, json!(true), &caps);
                    accepted(o.name, json!(false), &caps);
                    refused(o.name, json!("maybe"), &caps);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn documented_bounds_are_accepted_and_values_just_outside_are_refused() {
        for caps in caps_sets() {
            for o in OPTIONS {
                match o.kind {
                    Kind::Integer { min, max } => {
                        let (min, max) = (min.of(&caps) as i64, max.of(&caps) as i64);
                        accepted(o.name, json!(min), &caps);
                        accepted(o.name, json!(max), &caps);
                        refused(o.name, json!(min - 1), &caps);
                        refused(o.name, json!(max + 1), &caps);
                    }
                    Kind::Number { min, max } => {
                        let (min, max) = (min.of(&caps), max.of(&caps));
                        accepted(o.name, json!(min), &caps);
                        accepted(o.name, json!(max), &caps);
                        refused(o.name, json!(min - 0.01), &caps);
                        refused(o.name, json!(max + 0.01), &caps);
                    }
                    Kind::Text { max_len, .. } => {
                        let over = "a".repeat(max_len.of(&caps) as usize + 1);
                        refused(o.name, json!(over), &caps);
                    }
                    Kind::List { max_items, item } => {
                        let entry = match item {
                            Item::Text { max_len, .. } => {
                                refused(o.name, json!(["a".repeat(max_len + 1)]), &caps);
                                "a".to_string()
                            }
                            Item::OneOf(values) => values()[0].to_string(),
                        };
                        accepted(o.name, json!(vec![entry.clone(); max_items]), &caps);
                        refused(o.name, json!(vec![entry; max_items + 1]), &caps);
                    }
                    Kind::Headers { max_items } => {
                        let headers = |n: usize| -> Map<String, Value> {
                            (0..n).map(|i| (format!("X-H{i}"), json!("v"))).collect()
                        };
                        accepted(o.name, Value::Object(headers(max_items)), &caps);
                        refused(o.name, Value::Object(headers(max_items + 1)), &caps);
                    }
                    Kind::Cookies { max_items } => {
                        let cookies = |n: usize| -> Vec<String> {
                            (0..n).map(|i| format!("c{i}=v")).collect()
                        };
                        accepted(o.name, json!(cookies(max_items)), &caps);
                        refused(o.name, json!(cookies(max_items + 1)), &caps);
                    }
                    Kind::Boolean | Kind::OneOf { .. } => {}
                }
            }
        }
    }

    /// Strings the pattern checks below try, as each option's value (or list entry).
    const PROBES: &[&str] = &[
        "",
        " ",
        "a",
        "x",
        "1a",
        "de",
        "de-DE",
        "zh-Hant-TW",
        "en-US-x",
        "toolongtag-DE",
        "es-419",
        "de-DE-1996",
        "en-US-posix",
        "en-q0",
        "en-00",
        "en-abc",
        "en-a1",
        "en-12",
        "en-ab-cd",
        "Qv-q0",
        "en-Latn-US-fonipa-x",
        "Europe/Berlin",
        "leapseconds",
        "posixrules",
        "posix/Europe/Berlin",
        "right/UTC",
        "UTC",
        "Etc/GMT+1",
        "a/b",
        "/etc",
        "a//b",
        "..",
        "Mozilla/5.0 (X11)",
        "a{b}",
        "a}",
        "#box",
        ".ad",
        "tab\there",
        "ctl\u{1}x",
        "c1\u{85}x",
        "é",
        "日本",
        "X-Test: yes",
        "X-Test:",
        "Bad Name: v",
        "X-A:b\u{7}",
        "k=v",
        "k=",
        "=v",
        "a b=c",
        "k=v;x",
        "a,b=c",
        "*://ads.example.com/*",
        "*/tracker/*",
    ];

    /// Every value of the corpus the parser accepts matches the documented pattern, and every
    /// value that matches it is accepted (but a time zone must also exist on the host).
    #[test]
    fn documented_patterns_agree_with_the_parser() {
        let caps = CaptureConfig::default();
        let one = |s: &str| json!(s);
        let listed = |s: &str| json!([s]);
        for o in OPTIONS {
            let (pattern, wrap): (&str, &dyn Fn(&str) -> Value) = match o.kind {
                Kind::Text {
                    pattern: Some(p), ..
                } => (p, &one),
                Kind::List {
                    item:
                        Item::Text {
                            pattern: Some(p), ..
                        },
                    ..
                } => (p, &listed),
                Kind::Headers { .. } => (HEADER_LINE, &listed),
                Kind::Cookies { .. } => (COOKIE_LINE, &listed),
                _ => continue,
            };
            let re = regex::Regex::new(pattern).expect("a valid pattern");
            for probe in PROBES {
                let (errors, _) = run(with(o.name, wrap(probe), &caps), &caps);
                let accepted = errors.iter().all(|e| e.field != o.name);
                let matches = re.is_match(probe);
                assert!(
                    !accepted || matches,
                    "`{}` accepts {probe:?}, which its pattern {pattern} in {HERE} refuses",
                    o.name
                );
                assert!(
                    accepted || !matches || o.name == "timezone",
                    "`{}` refuses {probe:?}, which its pattern {pattern} in {HERE} admits: {errors:?}",
                    o.name
                );
            }
        }
        // `headers` as a JSON object: each name a token, each value without controls.
        let (name_re, value_re) = (
            regex::Regex::new(HEADER_NAME).expect("a valid pattern"),
            regex::Regex::new(HEADER_VALUE).expect("a valid pattern"),
        );
        for probe in PROBES {
            for (name, value, re) in [(*probe, "v", &name_re), ("X-A", *probe, &value_re)] {
                let mut headers = Map::new();
                headers.insert(name.to_string(), json!(value));
                let (errors, _) = run(with("headers", Value::Object(headers), &caps), &caps);
                let checked = if re.as_str() == HEADER_NAME {
                    name
                } else {
                    value
                };
                assert_eq!(
                    errors.is_empty(),
                    re.is_match(checked),
                    "headers {{{name:?}: {value:?}}}: the parser and the pattern {} disagree: {errors:?}",
                    re.as_str()
                );
            }
        }
    }

    #[test]
    fn documented_defaults_are_the_parsers() {
        for caps in caps_sets() {
            let plain = table::parse(
                match json!({"url": "https://example.com/"}) {
                    Value::Object(map) => map,
                    _ => unreachable!(),
                },
                &caps,
            )
            .expect("a bare URL is a valid request");
            let s = &plain.spec;
            let printed = table::parse(
                match json!({"url": "https://example.com/", "format": "pdf"}) {
                    Value::Object(map) => map,
                    _ => unreachable!(),
                },
                &caps,
            )
            .expect("a bare PDF request is valid");
            let pdf = printed
                .spec
                .pdf
                .as_ref()
                .expect("format=pdf has PDF settings");
            for o in OPTIONS {
                let number = |v: f64| Value::from(v);
                let parsed: Value = match o.name {
                    "format" => json!(s.format.as_str()),
                    "quality" => number(80.0), // applied by the encoder when none is given
                    "width" => number(f64::from(s.width)),
                    "height" => number(f64::from(s.height)),
                    "device_scale_factor" => number(s.device_scale_factor),
                    "full_page" => json!(s.full_page),
                    "clip_x" | "clip_y" => number(0.0), // applied with clip_width/height
                    "wait_until" => json!(format!("{:?}", s.wait_until).to_lowercase()),
                    "delay" => number(s.delay.as_millis() as f64),
                    "timeout" => number(plain.timeout.as_millis() as f64),
                    "dark_mode" => json!(s.dark_mode),
                    "omit_background" => json!(s.omit_background),
                    "scroll_to_load" => json!(s.scroll_to_load),
                    "allow_http_errors" => json!(s.allow_http_errors),
                    "block_ads" => json!(s.filters.ads),
                    "block_trackers" => json!(s.filters.trackers),
                    "block_cookie_banners" => json!(s.filters.cookie_banners),
                    "pdf_paper" if (pdf.paper_width, pdf.paper_height) == (8.5, 11.0) => {
                        json!("letter")
                    }
                    "pdf_landscape" => json!(pdf.landscape),
                    "pdf_print_background" => json!(pdf.print_background),
                    "pdf_scale" => number(pdf.scale),
                    "reduced_motion" => json!(s.reduced_motion),
                    "store" => json!(plain.store.is_some()),
                    "async" => json!(plain.async_job.is_some()),
                    "geolocation_accuracy" => number(100.0), // applied with a position
                    "media" => json!(s.media.map_or("screen", |m| m.as_str())),
                    "response_type" => {
                        json!(if s.page_info { "json" } else { "binary" })
                    }
                    _ => Value::Null,
                };
                let documented = match o.default {
                    DefaultValue::None => Value::Null,
                    DefaultValue::Bool(b) => json!(b),
                    DefaultValue::Number(l) => number(l.of(&caps)),
                    DefaultValue::Text(t) => json!(t),
                };
                assert_eq!(
                    parsed, documented,
                    "the default of `{}` in {HERE} is not the parser's (or the check of this \
                     default is missing from documented_defaults_are_the_parsers)",
                    o.name
                );
            }
        }
    }
}
