//! Interaction before the shot: `click` (in order), `scroll_to`, `wait_for_function`, and `clip`
//! at scales 1 and 2 and with a full page; each failure free and clearly named.

use serde_json::Value;

use crate::support::{
    audited, client_with_key, credits_header, decode, enc, page, provision, ready_shared, rgb,
};

/// A capture of `path` with `extra` options: status, credits left, body.
async fn capture(key: &reqwest::Client, path: &str, extra: &str) -> (u16, Option<i64>, Vec<u8>) {
    let daemon = ready_shared().await;
    let r = key
        .get(daemon.url(&format!(
            "/api/v1/screenshot?url={}{extra}",
            enc(&page(path))
        )))
        .send()
        .await
        .expect("capture");
    let (status, credits) = (r.status().as_u16(), credits_header(&r));
    (status, credits, r.bytes().await.expect("body").to_vec())
}

fn code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body).map_or_else(
        |_| String::from_utf8_lossy(body).into_owned(),
        |v| v["error"]["code"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn clicks_run_in_order_and_change_what_is_captured() {
    let funded = provision(10);
    let key = client_with_key(&funded.key);
    let at = |body: &[u8]| rgb(&decode(body), 600, 400);

    let (status, _, body) = capture(&key, "/clickme", "").await;
    assert_eq!(status, 200);
    assert_eq!(at(&body), [255, 0, 0], "untouched");

    let (status, _, body) = capture(&key, "/clickme", "&click=%23go").await;
    assert_eq!(status, 200, "{}", code(&body));
    assert_eq!(at(&body), [0, 255, 0], "clicked");

    let (status, _, body) = capture(&key, "/clickme", "&click=%23go&click=%23more").await;
    assert_eq!(status, 200, "{}", code(&body));
    assert_eq!(at(&body), [0, 0, 255], "#go, then #more");

    let (status, _, body) = capture(&key, "/clickme", "&click=%23more&click=%23go").await;
    assert_eq!(status, 200, "{}", code(&body));
    assert_eq!(at(&body), [0, 255, 0], "#more first does nothing");

    let (status, left, body) = capture(&key, "/clickme", "&click=%23nothing").await;
    assert_eq!((status, code(&body).as_str()), (404, "selector_not_found"));
    assert_eq!(left, Some(6), "a missing element is free");
}

#[tokio::test]
async fn scroll_to_and_wait_for_function_shape_the_shot_and_fail_free() {
    let funded = provision(10);
    let key = client_with_key(&funded.key);

    // #target sits at 1500 px: scrolled to, it is at the top of the viewport.
    let (status, _, body) = capture(&key, "/element", "&scroll_to=%23target").await;
    assert_eq!(status, 200, "{}", code(&body));
    assert_eq!(rgb(&decode(&body), 60, 5), [0, 128, 0]);
    let (status, _, body) = capture(&key, "/element", "&scroll_to=%23nothing").await;
    assert_eq!((status, code(&body).as_str()), (404, "selector_not_found"));

    // #late appears after 600 ms: waited for, it is in the shot.
    let wait = enc("document.getElementById('late') !== null");
    let (status, _, body) = capture(&key, "/late/600", &format!("&wait_for_function={wait}")).await;
    assert_eq!(status, 200, "{}", code(&body));
    assert_eq!(rgb(&decode(&body), 5, 5), [0, 0, 255]);
    let (status, _, body) = capture(&key, "/plain", "&wait_for_function=false&timeout=1500").await;
    assert_eq!((status, code(&body).as_str()), (422, "function_timeout"));
    let (status, _, body) = capture(
        &key,
        "/plain",
        &format!("&wait_for_function={}", enc("this is not js")),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (400, "script_error"));

    let s = audited(&funded.account).await;
    assert_eq!(
        (s.balance.available, s.balance.spent),
        (8, 2),
        "only the two images"
    );
}

#[tokio::test]
async fn clip_has_the_size_asked_for_at_every_scale_and_on_a_full_page() {
    let funded = provision(10);
    let key = client_with_key(&funded.key);
    // The red box of /plain is at (10,10), 300x150.
    let box_clip = "&clip_x=10&clip_y=10&clip_width=300&clip_height=150";
    for scale in [1u32, 2] {
        let (status, _, body) = capture(
            &key,
            "/plain",
            &format!("{box_clip}&device_scale_factor={scale}"),
        )
        .await;
        assert_eq!(status, 200, "{}", code(&body));
        let image = decode(&body);
        assert_eq!(
            image.dimensions(),
            (300 * scale, 150 * scale),
            "scale {scale}"
        );
        assert_eq!(rgb(&image, 1, 1), [255, 0, 0]);
        assert_eq!(rgb(&image, 300 * scale - 2, 150 * scale - 2), [255, 0, 0]);
    }
    // Far below the viewport on a 3000 px page: its last 1000 px are blue.
    let (status, _, body) = capture(
        &key,
        "/tall/3000",
        "&full_page=true&clip_x=0&clip_y=2500&clip_width=200&clip_height=400",
    )
    .await;
    assert_eq!(status, 200, "{}", code(&body));
    let image = decode(&body);
    assert_eq!(image.dimensions(), (200, 400));
    assert_eq!(rgb(&image, 100, 200), [0, 0, 255]);

    let (status, _, body) = capture(&key, "/plain", "&clip_width=100").await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["field"], "clip_width", "{body}");
    let (status, _, body) = capture(
        &key,
        "/plain",
        "&clip_width=100&clip_height=100&selector=%23box",
    )
    .await;
    assert_eq!(status, 400, "{}", code(&body));
}
