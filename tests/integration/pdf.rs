//! `format=pdf`: Chromium's `Page.printToPDF`, parsed back with lopdf — the page count (page
//! ranges, the `capture.max_pdf_pages` cut), the page size (named papers, lengths with units,
//! landscape), one credit per PDF and none for a refused or failed one.

use std::net::SocketAddr;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::Value;
use warp::Filter;

use crate::support::{
    assert_refused_options, audited, client_with_key, credits_header, enc, post_capture, provision,
    ready_shared, serve_site,
};

/// A site of documents of `n` pages (`/pages/n`: one forced page break after each of n blocks).
fn site() -> SocketAddr {
    static SITE: OnceLock<SocketAddr> = OnceLock::new();
    *SITE.get_or_init(|| {
        serve_site("127.0.0.1:0", |_| {
            warp::path!("pages" / u32).map(|n: u32| {
                let blocks: String = (1..=n.min(500))
                    .map(|i| format!("<div style='break-after:page'>page {i}</div>"))
                    .collect();
                warp::reply::html(format!(
                    "<!doctype html><html><body style='background:rgb(0,128,255)'>{blocks}</body></html>"
                ))
            })
        })
    })
}

fn pages_url(n: u32) -> String {
    format!("http://{}/pages/{n}", site())
}

/// The page count and the first page's size (points) of a PDF.
fn pdf_pages(bytes: &[u8]) -> (usize, (f64, f64)) {
    let doc = lopdf::Document::load_mem(bytes).expect("a PDF lopdf parses");
    let pages = doc.get_pages();
    let first = *pages.values().next().expect("a first page");
    let page = doc
        .get_object(first)
        .and_then(lopdf::Object::as_dict)
        .expect("page dictionary");
    // The media box is the page's own or inherited from its page tree node.
    let media = page.get(b"MediaBox").ok().cloned().or_else(|| {
        let parent = page
            .get(b"Parent")
            .and_then(lopdf::Object::as_reference)
            .ok()?;
        doc.get_object(parent)
            .and_then(lopdf::Object::as_dict)
            .ok()?
            .get(b"MediaBox")
            .ok()
            .cloned()
    });
    let number = |o: &lopdf::Object| match o {
        lopdf::Object::Integer(i) => *i as f64,
        lopdf::Object::Real(r) => f64::from(*r),
        other => panic!("not a number: {other:?}"),
    };
    let media = media.expect("a media box");
    let media = media.as_array().expect("media box array");
    let size = (
        number(&media[2]) - number(&media[0]),
        number(&media[3]) - number(&media[1]),
    );
    (pages.len(), size)
}

async fn print(key: &reqwest::Client, n: u32, extra: &str) -> reqwest::Response {
    let daemon = ready_shared().await;
    key.get(daemon.url(&format!(
        "/api/v1/screenshot?url={}&format=pdf{extra}",
        enc(&pages_url(n))
    )))
    .send()
    .await
    .expect("capture")
}

fn close(got: (f64, f64), want: (f64, f64)) -> bool {
    (got.0 - want.0).abs() < 1.5 && (got.1 - want.1).abs() < 1.5
}

#[tokio::test]
async fn a_pdf_has_the_pages_and_paper_asked_for_and_costs_one_credit() {
    let funded = provision(20);
    let key = client_with_key(&funded.key);

    // Default: letter, portrait, every page; application/pdf, one credit.
    let r = print(&key, 5, "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(credits_header(&r), Some(19), "one credit");
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.headers()["x-image-width"], "612", "letter, in points");
    let body = r.bytes().await.expect("body");
    let (pages, size) = pdf_pages(&body);
    assert_eq!(pages, 5);
    assert!(close(size, (612.0, 792.0)), "letter: {size:?}");

    // (options, pages, size in points)
    let cases: [(&str, usize, (f64, f64)); 6] = [
        ("&pdf_paper=a4", 5, (595.3, 841.9)),
        ("&pdf_paper=A4&pdf_landscape=true", 5, (841.9, 595.3)),
        ("&pdf_paper=legal&pdf_page_ranges=1-3,5", 4, (612.0, 1008.0)),
        (
            "&pdf_width=100mm&pdf_height=4in&pdf_margin=5mm",
            5,
            (283.5, 288.0),
        ),
        (
            "&pdf_width=480&pdf_height=960px&pdf_landscape=1",
            5,
            (720.0, 360.0),
        ),
        (
            "&pdf_page_ranges=2,4-9&pdf_margin_top=1cm&pdf_scale=0.5",
            3,
            (612.0, 792.0),
        ),
    ];
    for (options, want_pages, want_size) in cases {
        let r = print(&key, 5, options).await;
        let status = r.status();
        let body = r.bytes().await.expect("body");
        assert_eq!(status, 200, "{options}: {}", String::from_utf8_lossy(&body));
        let (pages, size) = pdf_pages(&body);
        assert_eq!(pages, want_pages, "{options}");
        assert!(
            close(size, want_size),
            "{options}: {size:?} != {want_size:?}"
        );
    }

    // A longer document than capture.max_pdf_pages (50) is cut after 50 pages.
    let r = print(&key, 60, "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(pdf_pages(&r.bytes().await.expect("body")).0, 50);
    let r = print(&key, 60, "&pdf_page_ranges=3-200").await;
    assert_eq!(r.status(), 200);
    assert_eq!(pdf_pages(&r.bytes().await.expect("body")).0, 50);

    // response_type=json: the PDF in base64, as images are.
    let r = print(&key, 2, "&response_type=json").await;
    assert_eq!(r.status(), 200);
    let json: Value = r.json().await.expect("json");
    assert_eq!(json["format"], "pdf", "{json}");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(json["image"].as_str().expect("image"))
        .expect("base64");
    assert_eq!(pdf_pages(&pdf).0, 2);
    assert_eq!(json["page"]["status"], 200, "{json}");

    // Ranges past the document's end: a free failure, clearly named.
    let r = print(&key, 3, "&pdf_page_ranges=7-9").await;
    assert_eq!(r.status(), 422);
    let left = credits_header(&r);
    let json: Value = r.json().await.expect("json");
    assert_eq!(json["error"]["code"], "pdf_no_pages", "{json}");
    assert!(json["request_id"].is_string());

    let s = audited(&funded.account).await;
    assert_eq!(left, Some(s.balance.available));
    assert_eq!((s.balance.spent, s.holds.len()), (10, 0), "ten PDFs");
}

#[tokio::test]
async fn pdf_options_are_checked_and_image_options_refused_naming_the_field() {
    let pdf = "&format=pdf";
    let cases: Vec<(String, &str)> = [
        ("&pdf_paper=a7", "pdf_paper"),
        ("&pdf_width=10cm", "pdf_height"),
        ("&pdf_height=10cm", "pdf_width"),
        ("&pdf_paper=a4&pdf_width=10cm&pdf_height=10cm", "pdf_width"),
        ("&pdf_width=-3in&pdf_height=4in", "pdf_width"),
        ("&pdf_width=10furlongs&pdf_height=4in", "pdf_width"),
        ("&pdf_width=300in&pdf_height=4in", "pdf_width"),
        ("&pdf_margin=6in", "pdf_margin"),
        ("&pdf_margin=1cm&pdf_margin_top=1cm", "pdf_margin_top"),
        (
            "&pdf_margin_left=5in&pdf_margin_right=4in",
            "pdf_margin_left",
        ),
        ("&pdf_scale=3", "pdf_scale"),
        ("&pdf_scale=0.05", "pdf_scale"),
        ("&pdf_landscape=sideways", "pdf_landscape"),
        ("&pdf_print_background=maybe", "pdf_print_background"),
        ("&pdf_page_ranges=3-1", "pdf_page_ranges"),
        ("&pdf_page_ranges=1-2;4", "pdf_page_ranges"),
        ("&pdf_page_ranges=0", "pdf_page_ranges"),
        ("&quality=50", "quality"),
        ("&selector=h1", "selector"),
        ("&full_page=true", "full_page"),
        ("&clip_width=10&clip_height=10", "clip_width"),
        ("&device_scale_factor=2", "device_scale_factor"),
        ("&omit_background=true", "omit_background"),
        ("&scroll_to=%23box", "scroll_to"),
    ]
    .into_iter()
    .map(|(q, f)| (format!("{pdf}{q}"), f))
    .chain([
        // PDF options on an image.
        ("&pdf_paper=a4".to_string(), "pdf_paper"),
        ("&format=png&pdf_scale=1".to_string(), "pdf_scale"),
    ])
    .collect();
    assert_refused_options(&cases).await;
}

#[tokio::test]
async fn a_pdf_is_printed_for_print_media_unless_media_says_screen() {
    let funded = provision(3);
    let key = client_with_key(&funded.key);
    // Three extra pages exist only in print: 4 pages for print media, 1 for screen.
    let html = "<!doctype html><html><head><style>.print { display: none; } \
                @media print { .print { display: block; break-before: page; } }</style></head>\
                <body><p>always</p><div class=print>1</div><div class=print>2</div>\
                <div class=print>3</div></body></html>";
    for (media, want) in [(None, 4), (Some("print"), 4), (Some("screen"), 1)] {
        let mut options = serde_json::json!({"html": html, "format": "pdf"});
        if let Some(media) = media {
            options["media"] = media.into();
        }
        let (status, _, body) = post_capture(&key, &options).await;
        assert_eq!(status, 200, "{media:?}");
        assert_eq!(pdf_pages(&body).0, want, "{media:?}");
    }
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.balance.spent), (0, 3));
}
