//! `html` instead of `url`: supplied markup rendered (POST body or GET query), its waits, a PDF
//! of it, one credit each; its checks (size cap, exactly one of `url` and `html`) and an empty
//! document free. Its subresources against the egress policy are in `egress.rs`, on that file's
//! strict daemon.

use serde_json::{json, Value};

use crate::support::{
    audited, client_with_key, decode, enc, post_capture, provision, ready_shared, rgb,
};

/// A POSTed capture: status, credits left, body.
async fn post(key: &reqwest::Client, options: Value) -> (u16, Option<i64>, Vec<u8>) {
    post_capture(key, &options).await
}

fn error(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body).unwrap_or(Value::Null)["error"].clone()
}

const BLUE: &str = "<!doctype html><html><body style='margin:0;background:rgb(0,128,255)'>\
                    <h1>supplied markup</h1></body></html>";

#[tokio::test]
async fn html_renders_with_its_waits_and_costs_one_credit() {
    let daemon = ready_shared().await;
    let funded = provision(10);
    let key = client_with_key(&funded.key);

    // POST: the markup's colour in the pixels, one credit.
    let (status, left, body) = post(&key, json!({"html": BLUE, "width": 800, "height": 600})).await;
    assert_eq!(status, 200, "{}", error(&body));
    assert_eq!(left, Some(9), "one credit");
    let image = decode(&body);
    assert_eq!(image.dimensions(), (800, 600));
    assert_eq!(rgb(&image, 400, 500), [0, 128, 255]);

    // GET with the markup in the query works the same.
    let r = key
        .get(daemon.url(&format!(
            "/api/v1/screenshot?html={}&width=400&height=300",
            enc(BLUE)
        )))
        .send()
        .await
        .expect("capture");
    assert_eq!(r.status(), 200);
    assert_eq!(
        rgb(&decode(&r.bytes().await.expect("body")), 200, 250),
        [0, 128, 255]
    );

    // Waits hold for the markup's own script: green only after 400 ms, then #done.
    let late = "<!doctype html><html><body style='margin:0;background:rgb(255,0,0)'><script>\
                setTimeout(() => { document.body.style.background = 'rgb(0,255,0)'; \
                const d = document.createElement('div'); d.id = 'done'; \
                document.body.appendChild(d); }, 400);</script></body></html>";
    for wait in [
        json!({"wait_for_selector": "#done"}),
        json!({"wait_for_function": "document.getElementById('done') !== null"}),
        json!({"delay": 900, "wait_until": "networkidle"}),
    ] {
        let mut options = json!({"html": late, "width": 400, "height": 300});
        for (k, v) in wait.as_object().expect("object") {
            options[k] = v.clone();
        }
        let (status, _, body) = post(&key, options).await;
        assert_eq!(status, 200, "{wait}: {}", error(&body));
        assert_eq!(rgb(&decode(&body), 200, 150), [0, 255, 0], "{wait}");
    }

    // And printed to PDF.
    let (status, _, body) = post(&key, json!({"html": BLUE, "format": "pdf"})).await;
    assert_eq!(status, 200, "{}", error(&body));
    assert!(body.starts_with(b"%PDF-"));

    let s = audited(&funded.account).await;
    assert_eq!(
        (s.balance.available, s.balance.spent),
        (4, 6),
        "six captures"
    );
}

#[tokio::test]
async fn html_is_checked_and_an_empty_document_is_free() {
    let funded = provision(3);
    let key = client_with_key(&funded.key);
    let cases = [
        // Over capture.max_html_bytes (512 KiB), yet within the body cap (1 MiB).
        (json!({"html": "x".repeat(600 * 1024)}), "html"),
        (json!({"html": BLUE, "url": "http://127.0.0.1:9/"}), "html"),
        (json!({"html": "  \n "}), "html"),
        (json!({"html": ["<p>a</p>"]}), "html"),
        (json!({}), "url"),
    ];
    for (options, field) in cases {
        let (status, left, body) = post(&key, options).await;
        assert_eq!(status, 400);
        assert_eq!(left, Some(3), "refused before any hold");
        let error = error(&body);
        assert_eq!(error["code"], "invalid_parameter", "{error}");
        assert_eq!(error["field"], field, "{error}");
    }

    // Markup whose document holds nothing: nothing to capture, free.
    let (status, left, body) = post(&key, json!({"html": "<html></html>"})).await;
    assert_eq!(status, 502);
    assert_eq!(error(&body)["code"], "empty_page");
    assert_eq!(left, Some(3));
    let s = audited(&funded.account).await;
    assert_eq!((s.balance.available, s.holds.len()), (3, 0));
}
