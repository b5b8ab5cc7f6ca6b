//! Capture options as the API receives them (a JSON body, or query parameters with the same
//! names) and their validation into a [`CaptureSpec`]. Every field is checked and every problem
//! reported, each naming its field; unknown fields are errors too.
//!
//! - `table`: which options exist, their defaults, bounds and combinations ([`parse`]);
//! - `reader`: the lenient readers of one field (JSON values or their query-string forms);
//! - `headers`, `cookies`: the readers of the two structured options;
//! - `pdf`: the `format=pdf` options.

mod cookies;
mod devices;
mod headers;
mod pdf;
mod reader;
pub mod spec;
mod table;

use std::time::Duration;

use crate::farm::CaptureSpec;

pub use reader::query_to_map;
pub use table::parse;

/// How the image is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    Binary,
    Json,
}

/// What a request said about the cache (`cache`, `cache_ttl`, `cache_key`); the server's
/// `[cache]` settings decide the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheAsk {
    /// `None`: the server's default (`cache.default_on`).
    pub wanted: Option<bool>,
    pub ttl: Option<Duration>,
    pub key: Option<String>,
}

/// `store=true`: the capture is uploaded to the bucket and the answer is its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    /// `store_path`: the object's name under the account's folder; `None` = a generated one.
    pub path: Option<String>,
}

/// `async=true`: the capture runs as a job; its result is POSTed to `webhook_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncRequest {
    pub webhook_url: url::Url,
}

/// A validated request.
#[derive(Debug)]
pub struct CaptureRequest {
    pub spec: CaptureSpec,
    pub timeout: Duration,
    pub response_type: ResponseType,
    pub cache: CacheAsk,
    /// `store=true` (and its `store_path`); `None` = the image is the answer.
    pub store: Option<StoreRequest>,
    /// `async=true` with its `webhook_url`; `None` = answered synchronously.
    pub async_job: Option<AsyncRequest>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::errors::FieldError;
    use crate::config::CaptureConfig;
    use crate::farm::job::{ImageFormat, WaitUntil};
    use serde_json::json;
    use serde_json::Value;

    fn caps() -> CaptureConfig {
        CaptureConfig::default()
    }

    fn parse_json(v: Value) -> Result<CaptureRequest, Vec<FieldError>> {
        match v {
            Value::Object(map) => parse(map, &caps()),
            _ => panic!("test input must be an object"),
        }
    }

    fn fields(result: Result<CaptureRequest, Vec<FieldError>>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn minimal_request_gets_defaults() {
        let req = parse_json(json!({"url": "https://example.com/"})).expect("valid");
        assert_eq!(req.spec.format, ImageFormat::Png);
        assert_eq!((req.spec.width, req.spec.height), (1280, 800));
        assert_eq!(req.timeout, Duration::from_millis(30_000));
        assert_eq!(req.response_type, ResponseType::Binary);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({}), "url"),
            (json!({"url": "ftp://example.com"}), "url"),
            (json!({"url": "file:///etc/passwd"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"url": "https://e.com", "format": "gif"}), "format"),
            (
                json!({"url": "https://e.com", "format": "jpeg", "quality": 0}),
                "quality",
            ),
            (json!({"url": "https://e.com", "quality": 50}), "quality"),
            (json!({"url": "https://e.com", "width": 0}), "width"),
            (json!({"url": "https://e.com", "height": 99999}), "height"),
            (
                json!({"url": "https://e.com", "device_scale_factor": 4}),
                "device_scale_factor",
            ),
            (
                json!({"url": "https://e.com", "device_scale_factor": "NaN"}),
                "device_scale_factor",
            ),
            (
                json!({"url": "https://e.com", "full_page": "maybe"}),
                "full_page",
            ),
            (
                json!({"url": "https://e.com", "full_page": true, "selector": "h1"}),
                "selector",
            ),
            (
                json!({"url": "https://e.com", "wait_until": "never"}),
                "wait_until",
            ),
            (json!({"url": "https://e.com", "delay": 999999}), "delay"),
            (json!({"url": "https://e.com", "timeout": 5}), "timeout"),
            (
                json!({"url": "https://e.com", "timeout": 1000, "delay": 2000}),
                "delay",
            ),
            (
                json!({"url": "https://e.com", "hide_selectors": [1]}),
                "hide_selectors",
            ),
            (
                json!({"url": "https://e.com", "css": "x".repeat(70_000)}),
                "css",
            ),
            (
                json!({"url": "https://e.com", "headers": {"Host": "a"}}),
                "headers",
            ),
            (
                json!({"url": "https://e.com", "headers": {"X-A": "a\r\nb"}}),
                "headers",
            ),
            (
                json!({"url": "https://e.com", "cookies": ["novalue"]}),
                "cookies",
            ),
            (
                json!({"url": "https://e.com", "response_type": "xml"}),
                "response_type",
            ),
            (
                json!({"url": "https://e.com", "format": "jpeg", "omit_background": true}),
                "omit_background",
            ),
            (json!({"url": "https://e.com", "colour": "red"}), "colour"),
            // Found by schemathesis: these passed validation and failed in Chromium.
            (json!({"url": "https://e.com", "locale": "en-q0"}), "locale"),
            (
                json!({"url": "https://e.com", "locale": "en-abc"}),
                "locale",
            ),
            (
                json!({"url": "https://e.com", "timezone": "posix/Europe/Berlin"}),
                "timezone",
            ),
            (
                json!({"url": "https://e.com", "timezone": "leapseconds"}),
                "timezone",
            ),
            (
                json!({"url": "https://e.com", "timezone": "posixrules"}),
                "timezone",
            ),
        ];
        for (input, field) in cases {
            let got = fields(parse_json(input.clone()));
            assert_eq!(got, vec![field.to_string()], "input {input}");
        }
    }

    #[test]
    fn all_errors_are_reported_together() {
        let got = fields(parse_json(
            json!({"url": "x", "width": -1, "format": "bmp"}),
        ));
        assert_eq!(got, vec!["url", "format", "width"]);
    }

    #[test]
    fn query_strings_use_the_same_names_and_string_forms() {
        let map = query_to_map(
            "url=https%3A%2F%2Fexample.com%2F&format=jpeg&quality=70&width=800&height=600\
             &device_scale_factor=2&full_page=true&dark_mode=1&hide_selectors=.a&hide_selectors=%23b\
             &headers=X-Test%3A%20yes&cookies=session%3Dabc&response_type=json&wait_until=networkidle",
        );
        let req = parse(map, &caps()).expect("valid");
        let spec = req.spec;
        assert_eq!(spec.format, ImageFormat::Jpeg);
        assert_eq!(spec.quality, Some(70));
        assert_eq!((spec.width, spec.height), (800, 600));
        assert!((spec.device_scale_factor - 2.0).abs() < f64::EPSILON);
        assert!(spec.full_page && spec.dark_mode);
        assert_eq!(spec.hide_selectors, vec![".a", "#b"]);
        assert_eq!(
            spec.headers,
            vec![("X-Test".to_string(), "yes".to_string())]
        );
        assert_eq!(spec.cookies[0].name, "session");
        assert_eq!(spec.cookies[0].value, "abc");
        assert_eq!(spec.wait_until, WaitUntil::NetworkIdle);
        assert_eq!(req.response_type, ResponseType::Json);
    }

    #[test]
    fn repeated_scalar_query_parameter_is_an_error() {
        let map = query_to_map("url=https://a.com&width=1&width=2");
        assert_eq!(fields(parse(map, &caps())), vec!["width"]);
    }

    #[test]
    fn pdf_options_are_read_into_the_print_settings() {
        let req = parse_json(json!({"url": "https://e.com", "format": "pdf"})).expect("valid");
        assert_eq!(req.spec.format, ImageFormat::Pdf);
        let pdf = req.spec.pdf.expect("pdf settings");
        assert_eq!((pdf.paper_width, pdf.paper_height), (8.5, 11.0), "letter");
        assert!(pdf.print_background && !pdf.landscape);
        assert_eq!((pdf.margins, pdf.scale), (None, 1.0));
        assert_eq!(pdf.chromium_page_ranges(), "1-50", "capture.max_pdf_pages");

        let map = query_to_map(
            "url=https://e.com&format=PDF&pdf_paper=a4&pdf_landscape=true&pdf_margin_top=1in\
             &pdf_print_background=false&pdf_scale=0.5&pdf_page_ranges=5,1-3",
        );
        let pdf = parse(map, &caps()).expect("valid").spec.pdf.expect("pdf");
        assert!((pdf.paper_width - 210.0 / 25.4).abs() < 1e-9);
        assert!(pdf.landscape && !pdf.print_background);
        assert_eq!(pdf.margins, Some([1.0, 0.0, 0.0, 0.0]));
        assert_eq!(pdf.scale, 0.5);
        assert_eq!(pdf.chromium_page_ranges(), "1-3,5");

        let req = parse_json(json!({"url": "https://e.com", "format": "pdf",
            "pdf_width": "800px", "pdf_height": 480, "pdf_margin": "1cm"}))
        .expect("valid");
        let pdf = req.spec.pdf.expect("pdf");
        assert_eq!((pdf.paper_width, pdf.paper_height), (800.0 / 96.0, 5.0));
        assert_eq!(pdf.margins, Some([1.0 / 2.54; 4]));
        let png = parse_json(json!({"url": "https://e.com"})).expect("valid");
        assert!(png.spec.pdf.is_none());
    }

    #[test]
    fn pdf_and_image_options_do_not_mix() {
        let pdf = |extra: Value| {
            let mut v = json!({"url": "https://e.com", "format": "pdf"});
            for (k, x) in extra.as_object().expect("object") {
                v[k] = x.clone();
            }
            fields(parse_json(v))
        };
        for field in [
            "quality",
            "selector",
            "clip_x",
            "full_page",
            "device_scale_factor",
            "omit_background",
            "scroll_to",
        ] {
            assert_eq!(pdf(json!({ field: "1" })), vec![field], "{field}");
        }
        // null is absent, as everywhere.
        assert_eq!(pdf(json!({"quality": null})), Vec::<String>::new());
        assert_eq!(pdf(json!({"pdf_paper": "b5"})), vec!["pdf_paper"]);
        assert_eq!(pdf(json!({"pdf_width": "1in"})), vec!["pdf_height"]);
        assert_eq!(
            pdf(json!({"pdf_paper": "a4", "pdf_height": "1in"})),
            vec!["pdf_height"]
        );
        assert_eq!(
            pdf(json!({"pdf_width": "0.1in", "pdf_height": "1in"})),
            vec!["pdf_width"]
        );
        assert_eq!(pdf(json!({"pdf_margin": "4.3in"})), vec!["pdf_margin"]);
        assert_eq!(pdf(json!({"pdf_scale": 2.5})), vec!["pdf_scale"]);
        assert_eq!(
            pdf(json!({"pdf_page_ranges": "2-1"})),
            vec!["pdf_page_ranges"]
        );
        assert_eq!(pdf(json!({"pdf_page_ranges": 3})), Vec::<String>::new());
        for field in [
            "pdf_paper",
            "pdf_scale",
            "pdf_page_ranges",
            "pdf_margin_left",
        ] {
            let got = fields(parse_json(json!({"url": "https://e.com", field: "1"})));
            assert_eq!(got, vec![field], "{field} on a png");
        }
    }

    #[test]
    fn html_replaces_url_and_is_capped() {
        let req = parse_json(json!({"html": "<p>hi</p>"})).expect("valid");
        assert_eq!(req.spec.html.as_deref(), Some("<p>hi</p>"));
        assert_eq!(req.spec.url.as_str(), crate::farm::job::HTML_DOCUMENT_URL);
        let map = query_to_map("html=%3Ch1%3Ehi%3C%2Fh1%3E&format=pdf");
        let req = parse(map, &caps()).expect("valid");
        assert_eq!(req.spec.html.as_deref(), Some("<h1>hi</h1>"));
        assert!(req.spec.pdf.is_some());
        let url = parse_json(json!({"url": "https://e.com"})).expect("valid");
        assert!(url.spec.html.is_none());

        let max = caps().max_html_bytes;
        assert!(parse_json(json!({"html": "x".repeat(max)})).is_ok());
        for (input, field) in [
            (json!({"html": "x".repeat(max + 1)}), "html"),
            (json!({"html": " \n\t"}), "html"),
            (json!({"html": "<p>a</p>", "url": "https://e.com"}), "html"),
            (json!({"html": "<p>a</p>", "url": "nope"}), "url"),
            (json!({"html": {"a": 1}}), "html"),
        ] {
            let got = fields(parse_json(input.clone()));
            assert_eq!(got.first().map(String::as_str), Some(field), "{input}");
        }
        assert_eq!(fields(parse_json(json!({}))), vec!["url"]);
    }

    #[test]
    fn store_and_its_path() {
        let plain = parse_json(json!({"url": "https://e.com"})).expect("valid");
        assert_eq!(plain.store, None);
        let stored = parse_json(json!({"url": "https://e.com", "store": true})).expect("valid");
        assert_eq!(stored.store, Some(StoreRequest { path: None }));
        let map = query_to_map("url=https://e.com&store=true&store_path=2026%2F12%2Fhome.png");
        let named = parse(map, &caps()).expect("valid");
        assert_eq!(
            named.store,
            Some(StoreRequest {
                path: Some("2026/12/home.png".into())
            })
        );
        for path in ["../x.png", "/abs.png", "a//b", "a/./b", "a b", "..", "a/.."] {
            let got = fields(parse_json(
                json!({"url": "https://e.com", "store": true, "store_path": path}),
            ));
            assert_eq!(got, vec!["store_path"], "{path:?}");
        }
        let without = fields(parse_json(
            json!({"url": "https://e.com", "store_path": "a.png"}),
        ));
        assert_eq!(without, vec!["store_path"]);
        assert_eq!(
            fields(parse_json(
                json!({"url": "https://e.com", "store": "perhaps"})
            )),
            vec!["store"]
        );
    }

    #[test]
    fn cookie_objects_are_accepted() {
        let req = parse_json(json!({"url": "https://e.com", "cookies": [
            {"name": "a", "value": "1", "domain": "e.com", "httpOnly": true}
        ]}))
        .expect("valid");
        assert_eq!(req.spec.cookies[0].domain.as_deref(), Some("e.com"));
        assert_eq!(req.spec.cookies[0].http_only, Some(true));
    }
}
