//! What a capture produces: sizes, formats, and the options that change pixels.

use crate::support::{client, decode, enc, get, near, page, ready_shared, rgb};
use serde_json::json;

async fn shot(query: &str) -> reqwest::Response {
    let daemon = ready_shared().await;
    get(daemon.url(&format!("/api/v1/screenshot?{query}")))
        .await
        .expect("request")
}

async fn image(query: &str) -> image::RgbaImage {
    let response = shot(query).await;
    let status = response.status();
    let body = response.bytes().await.expect("body");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    decode(&body)
}

#[tokio::test]
async fn viewport_size_is_viewport_times_scale() {
    let url = enc(&page("/plain"));
    for (w, h, dsf) in [
        (640u32, 480u32, 1.0f64),
        (500, 300, 2.0),
        (333, 222, 3.0),
        (800, 600, 1.5),
    ] {
        let img = image(&format!(
            "url={url}&width={w}&height={h}&device_scale_factor={dsf}"
        ))
        .await;
        let want = (
            (f64::from(w) * dsf).round() as u32,
            (f64::from(h) * dsf).round() as u32,
        );
        assert_eq!(img.dimensions(), want, "viewport {w}x{h} at {dsf}");
    }
    // The red box (10,10)-(310,160) in CSS px lands at twice the coordinates at scale 2.
    let img = image(&format!(
        "url={url}&width=500&height=300&device_scale_factor=2"
    ))
    .await;
    assert!(near(rgb(&img, 40, 40), [255, 0, 0], 8));
    assert!(near(rgb(&img, 630, 40), [255, 255, 255], 8));
}

#[tokio::test]
async fn full_page_height_is_the_page_height() {
    for (height, dsf) in [(3000u32, 1.0f64), (3000, 2.0)] {
        let url = enc(&page(&format!("/tall/{height}")));
        let img = image(&format!(
            "url={url}&full_page=true&width=400&height=300&device_scale_factor={dsf}"
        ))
        .await;
        assert_eq!(
            img.dimensions(),
            ((400.0 * dsf) as u32, (f64::from(height) * dsf) as u32)
        );
        let bottom = img.height() - 5;
        assert!(near(rgb(&img, 10, 5), [255, 0, 0], 8));
        assert!(near(rgb(&img, 10, bottom), [0, 0, 255], 8));
    }
}

#[tokio::test]
async fn full_page_taller_than_chromium_paints_at_once_is_stitched() {
    let url = enc(&page("/tall/20000"));
    let img = image(&format!("url={url}&full_page=true&width=300&height=300")).await;
    assert_eq!(img.dimensions(), (300, 20000));
    // Bands land exactly where the page has them, across every tile boundary.
    for (y, want) in [
        (0, [255, 0, 0]),
        (999, [255, 0, 0]),
        (1000, [0, 255, 0]),
        (8191, [0, 255, 0]),
        (8192, [0, 255, 0]),
        (16384, [0, 255, 0]),
        (18999, [0, 255, 0]),
        (19000, [0, 0, 255]),
        (19999, [0, 0, 255]),
    ] {
        assert!(
            near(rgb(&img, 150, y), want, 8),
            "row {y}: {:?}",
            rgb(&img, 150, y)
        );
    }
}

#[tokio::test]
async fn element_capture_has_the_element_size() {
    let url = enc(&page("/element"));
    let img = image(&format!("url={url}&selector=%23target")).await;
    assert_eq!(img.dimensions(), (321, 123));
    assert!(near(rgb(&img, 160, 60), [0, 128, 0], 8));
    let img = image(&format!(
        "url={url}&selector=%23target&device_scale_factor=2"
    ))
    .await;
    assert_eq!(img.dimensions(), (642, 246));
}

#[tokio::test]
async fn element_that_appears_later_is_waited_for() {
    let url = enc(&page("/late/300"));
    let img = image(&format!("url={url}&selector=%23late")).await;
    assert_eq!(img.dimensions(), (77, 33));
    let img = image(&format!(
        "url={url}&wait_for_selector=%23late&width=200&height=100"
    ))
    .await;
    assert!(near(rgb(&img, 10, 10), [0, 0, 255], 8));
}

#[tokio::test]
async fn jpeg_and_webp_decode_with_the_right_type() {
    let url = enc(&page("/plain"));
    for (format, mime) in [
        ("jpeg", "image/jpeg"),
        ("webp", "image/webp"),
        ("png", "image/png"),
    ] {
        let response = shot(&format!("url={url}&format={format}&width=640&height=360")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], mime);
        let img = decode(&response.bytes().await.expect("body"));
        assert_eq!(img.dimensions(), (640, 360));
        assert!(near(rgb(&img, 100, 50), [255, 0, 0], 24), "{format}");
    }
    let response = shot(&format!("url={url}&format=jpeg&quality=10")).await;
    let low = response.bytes().await.expect("body").len();
    let response = shot(&format!("url={url}&format=jpeg&quality=95")).await;
    let high = response.bytes().await.expect("body").len();
    assert!(low < high, "quality changes the size: {low} vs {high}");
}

#[tokio::test]
async fn hide_selectors_css_and_dark_mode_change_pixels() {
    let url = enc(&page("/plain"));
    let base = image(&format!("url={url}&width=600&height=300")).await;
    assert!(near(rgb(&base, 450, 50), [0, 0, 255], 8));
    assert!(near(rgb(&base, 550, 250), [255, 255, 255], 8));

    let hidden = image(&format!(
        "url={url}&width=600&height=300&hide_selectors=.ad"
    ))
    .await;
    assert!(near(rgb(&hidden, 450, 50), [255, 255, 255], 8));
    assert!(
        near(rgb(&hidden, 100, 50), [255, 0, 0], 8),
        "other elements stay"
    );

    let css = enc("#box { background: rgb(0, 255, 0) !important; }");
    let styled = image(&format!("url={url}&width=600&height=300&css={css}")).await;
    assert!(near(rgb(&styled, 100, 50), [0, 255, 0], 8));

    let dark = image(&format!("url={url}&width=600&height=300&dark_mode=true")).await;
    assert!(near(rgb(&dark, 550, 250), [0, 0, 0], 8));
}

#[tokio::test]
async fn js_runs_before_the_capture() {
    let url = enc(&page("/plain"));
    let js = enc("document.body.style.background = 'rgb(0, 0, 255)'");
    let img = image(&format!("url={url}&width=600&height=300&js={js}")).await;
    assert!(near(rgb(&img, 550, 250), [0, 0, 255], 8));
}

#[tokio::test]
async fn headers_cookies_and_user_agent_reach_the_site_and_do_not_leak() {
    let daemon = ready_shared().await;
    let client = client();
    let body = json!({
        "url": page("/echo"), "width": 200, "height": 300,
        "cookies": [{"name": "k", "value": "v"}],
        "headers": {"X-Test": "yes"},
        "user_agent": "shotfarm-test",
    });
    let response = client
        .post(daemon.url("/api/v1/screenshot"))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let img = decode(&response.bytes().await.expect("body"));
    for y in [50, 150, 250] {
        assert!(near(rgb(&img, 100, y), [0, 255, 0], 8), "row {y}");
    }
    // A later capture runs in a fresh context: no cookie, header or user agent survives.
    for _ in 0..4 {
        let img = image(&format!("url={}&width=200&height=300", enc(&page("/echo")))).await;
        for y in [50, 150, 250] {
            assert!(
                near(rgb(&img, 100, y), [255, 0, 0], 8),
                "row {y} leaked state"
            );
        }
    }
}

#[tokio::test]
async fn omit_background_gives_transparency() {
    let url = enc(&page("/bare"));
    let img = image(&format!(
        "url={url}&width=200&height=100&omit_background=true"
    ))
    .await;
    assert_eq!(img.get_pixel(150, 80).0[3], 0, "background is transparent");
    assert_eq!(
        img.get_pixel(10, 10).0,
        [255, 0, 0, 255],
        "content stays opaque"
    );
    let img = image(&format!("url={url}&width=200&height=100")).await;
    assert_eq!(img.get_pixel(150, 80).0[3], 255);
}

#[tokio::test]
async fn scroll_to_load_triggers_lazy_content() {
    let url = enc(&page("/lazy"));
    let img = image(&format!("url={url}&full_page=true&width=300&height=400")).await;
    assert!(
        near(rgb(&img, 50, 3550), [255, 255, 255], 8),
        "untouched without scrolling"
    );
    let img = image(&format!(
        "url={url}&full_page=true&width=300&height=400&scroll_to_load=true"
    ))
    .await;
    assert!(
        near(rgb(&img, 50, 3550), [255, 0, 0], 8),
        "loaded after scrolling"
    );
}

#[tokio::test]
async fn json_response_carries_image_and_metadata() {
    let url = enc(&page("/plain"));
    let response = shot(&format!(
        "url={url}&width=320&height=200&response_type=json&format=webp"
    ))
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let v: serde_json::Value = response.json().await.expect("json");
    assert_eq!(v["width"], 320);
    assert_eq!(v["height"], 200);
    assert_eq!(v["format"], "webp");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["image"].as_str().expect("image"))
        .expect("base64");
    assert_eq!(v["bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(decode(&bytes).dimensions(), (320, 200));
    assert!(v["timings"]["render_ms"].as_f64().is_some());
    assert!(v["timings"]["queue_ms"].as_f64().is_some());
}

#[tokio::test]
async fn json_response_says_what_the_page_said_title_final_url_status_and_card_metadata() {
    let url = enc(&page("/to-meta"));
    let response = shot(&format!("url={url}&response_type=json")).await;
    assert_eq!(response.status(), 200);
    let v: serde_json::Value = response.json().await.expect("json");
    assert_eq!(v["page"]["title"], "Meta page", "{}", v["page"]);
    assert_eq!(v["page"]["url"], page("/meta"), "after the redirect");
    assert_eq!(v["page"]["status"], 200);
    assert_eq!(
        v["page"]["meta"],
        json!({
            "og:title": "The OG title",
            "og:image": "https://example.com/card.png",
            "twitter:card": "summary_large_image",
        })
    );
    // A binary response has no room for it, and does not gather it.
    let response = shot(&format!("url={url}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
}
