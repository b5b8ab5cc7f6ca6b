//! A page whose main document answers with an HTTP error, or with nothing at all, is a failed
//! capture: never an image, never charged — unless the caller asks for error pages
//! (`allow_http_errors=true`), which are then charged like any image.

use serde_json::Value;

use crate::support::{
    audited, client_with_key, credits_header, decode, enc, page, provision, ready_shared, rgb,
};

#[tokio::test]
async fn error_and_empty_pages_fail_free_and_allow_http_errors_captures_them_charged() {
    let daemon = ready_shared().await;
    let funded = provision(5);
    let key = client_with_key(&funded.key);
    let shot = |path: &str, extra: &str| {
        daemon.url(&format!(
            "/api/v1/screenshot?url={}{extra}",
            enc(&page(path))
        ))
    };

    for code in [404u16, 410, 500, 503] {
        let r = key
            .get(shot(&format!("/status/{code}"), ""))
            .send()
            .await
            .expect("capture");
        assert_eq!(r.status(), 502, "HTTP {code}");
        assert_eq!(
            credits_header(&r),
            Some(5),
            "HTTP {code}: an error page is free"
        );
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "target_http_error", "{body}");
        assert_eq!(body["error"]["target_status"], code, "{body}");
        assert!(body["request_id"].is_string(), "{body}");
    }

    let r = key.get(shot("/empty", "")).send().await.expect("capture");
    assert_eq!(r.status(), 502);
    assert_eq!(credits_header(&r), Some(5), "an empty page is free");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "empty_page", "{body}");

    // Asked for, an error page is an image like any other, and charged.
    let r = key
        .get(shot("/status/404", "&allow_http_errors=true"))
        .send()
        .await
        .expect("capture");
    assert_eq!(r.status(), 200);
    assert_eq!(credits_header(&r), Some(4), "charged");
    let image = decode(&r.bytes().await.expect("image"));
    assert_eq!(
        rgb(&image, 5, 300),
        [255, 0, 0],
        "the error page's own content"
    );

    // A bad value is a 400 naming the option, before any hold.
    let r = key
        .get(shot("/plain", "&allow_http_errors=maybe"))
        .send()
        .await
        .expect("capture");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["field"], "allow_http_errors", "{body}");

    let s = audited(&funded.account).await;
    assert_eq!(
        (s.balance.available, s.balance.reserved, s.balance.spent),
        (4, 0, 1),
        "exactly the one image asked for was charged"
    );
}
