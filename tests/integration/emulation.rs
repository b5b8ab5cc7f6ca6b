//! Emulation options as the page itself sees them: device presets (viewport, scale, user agent,
//! mobile, touch), time zone, locale (`navigator.language`, `Intl` and `Accept-Language`),
//! geolocation (with the permission granted), reduced motion and the print media type. The page
//! reports what it sees to the test's own site, then marks itself done.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use warp::Filter;

use crate::support::{assert_refused_options, captured_once_done, serve_site};

/// What the probe page reported, and the `Accept-Language` its request carried.
#[derive(Default)]
struct Reports {
    seen: Vec<Value>,
    accept_language: Vec<String>,
}

const PROBE: &str = r#"<!doctype html><html><head><meta name=viewport content="width=device-width">
<title>probe</title></head><body><script>
(async () => {
  const media = (q) => matchMedia(q).matches;
  const where = await new Promise((done) => {
    if (!navigator.geolocation) return done(null);
    navigator.geolocation.getCurrentPosition(
      (p) => done([p.coords.latitude, p.coords.longitude, p.coords.accuracy]),
      (e) => done('error ' + e.code), { timeout: 3000 });
  });
  const seen = {
    width: innerWidth, height: innerHeight, dpr: devicePixelRatio,
    ua: navigator.userAgent, touch: navigator.maxTouchPoints,
    coarse: media('(pointer: coarse)'),
    language: navigator.language,
    intl: Intl.DateTimeFormat().resolvedOptions().locale,
    tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
    reduced: media('(prefers-reduced-motion: reduce)'),
    print: media('print'),
    where,
  };
  await fetch('/report?d=' + encodeURIComponent(JSON.stringify(seen)));
  const done = document.createElement('div'); done.id = 'done'; document.body.appendChild(done);
})();
</script></body></html>"#;

fn probe_site() -> (String, Arc<Mutex<Reports>>) {
    let reports = Arc::new(Mutex::new(Reports::default()));
    let (page_log, report_log) = (reports.clone(), reports.clone());
    let addr = serve_site("127.0.0.1:0", move |_| {
        let probe = warp::path!("probe")
            .and(warp::header::optional::<String>("accept-language"))
            .map(move |lang: Option<String>| {
                if let Ok(mut r) = page_log.lock() {
                    r.accept_language.push(lang.unwrap_or_default());
                }
                warp::reply::html(PROBE)
            });
        let report = warp::path!("report")
            .and(warp::query::<std::collections::HashMap<String, String>>())
            .map(move |q: std::collections::HashMap<String, String>| {
                let seen = q
                    .get("d")
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(Value::Null);
                if let Ok(mut r) = report_log.lock() {
                    r.seen.push(seen);
                }
                "ok"
            });
        probe.or(report)
    });
    (format!("http://{addr}/probe"), reports)
}

/// Captures a fresh probe site with `options` and returns what the page reported.
async fn seen_with(options: &str) -> (Value, String) {
    let (url, reports) = probe_site();
    seen_on(&url, &reports, options).await
}

/// Captures the probe at `url` with `options` and returns what the page reported.
async fn seen_on(url: &str, reports: &Mutex<Reports>, options: &str) -> (Value, String) {
    captured_once_done(url, options).await;
    let r = reports.lock().expect("reports");
    let seen = r.seen.last().cloned().expect("the page reported");
    let language = r.accept_language.last().cloned().unwrap_or_default();
    (seen, language)
}

#[tokio::test]
async fn device_presets_reach_the_page_with_their_viewport_scale_user_agent_and_touch() {
    let (seen, _) = seen_with("&device=iphone_se").await;
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(375), Some(667)),
        "{seen}"
    );
    assert_eq!(seen["dpr"].as_f64(), Some(2.0), "{seen}");
    assert!(
        seen["ua"].as_str().unwrap_or("").contains("iPhone"),
        "{seen}"
    );
    assert!(seen["touch"].as_u64().unwrap_or(0) >= 1, "{seen}");
    assert_eq!(seen["coarse"], true, "{seen}");

    let (seen, _) = seen_with("&device=desktop-full-hd").await;
    assert_eq!(
        (seen["width"].as_u64(), seen["dpr"].as_f64()),
        (Some(1920), Some(1.0)),
        "{seen}"
    );
    assert_eq!(seen["touch"].as_u64(), Some(0), "{seen}");
    assert_eq!(seen["coarse"], false, "{seen}");

    // An explicit width wins over the preset's.
    let (seen, _) = seen_with("&device=pixel_8&width=500").await;
    assert_eq!(seen["width"].as_u64(), Some(500), "{seen}");
    assert!(
        seen["ua"].as_str().unwrap_or("").contains("Pixel 8"),
        "{seen}"
    );
}

#[tokio::test]
async fn timezone_locale_geolocation_reduced_motion_and_print_are_what_the_page_reports() {
    let (url, reports) = probe_site();
    let (seen, language) = seen_on(
        &url,
        &reports,
        "&timezone=Asia/Tokyo&locale=de-DE&geolocation_latitude=48.8584&geolocation_longitude=2.2945&geolocation_accuracy=25&reduced_motion=true&media=print",
    )
    .await;
    assert_eq!(seen["tz"], "Asia/Tokyo", "{seen}");
    assert_eq!(seen["language"], "de-DE", "{seen}");
    assert_eq!(seen["intl"], "de-DE", "{seen}");
    assert!(language.starts_with("de-DE"), "Accept-Language: {language}");
    assert_eq!(
        seen["where"],
        serde_json::json!([48.8584, 2.2945, 25]),
        "{seen}"
    );
    assert_eq!(seen["reduced"], true, "{seen}");
    assert_eq!(seen["print"], true, "{seen}");

    // The next capture of the same origin, without them: none of it is left over (the host's
    // zone is not Tokyo's; no position, the permission went with the capture's context).
    let (seen, _) = seen_on(&url, &reports, "").await;
    assert_ne!(seen["tz"], "Asia/Tokyo", "{seen}");
    assert_ne!(
        seen["where"],
        serde_json::json!([48.8584, 2.2945, 25]),
        "{seen}"
    );
    assert_eq!(
        (seen["reduced"].clone(), seen["print"].clone()),
        (Value::Bool(false), Value::Bool(false)),
        "{seen}"
    );
}

#[tokio::test]
async fn bad_emulation_options_are_400s_naming_the_field() {
    let cases = [
        ("device=nokia_3310", "device"),
        ("timezone=Mars/Olympus", "timezone"),
        ("timezone=../../etc/passwd", "timezone"),
        ("locale=not a locale", "locale"),
        (
            "geolocation_latitude=91&geolocation_longitude=0",
            "geolocation_latitude",
        ),
        ("geolocation_latitude=10", "geolocation_latitude"),
        ("media=tv", "media"),
        ("reduced_motion=sometimes", "reduced_motion"),
    ];
    let cases: Vec<(String, &str)> = cases.iter().map(|(q, f)| (format!("&{q}"), *f)).collect();
    assert_refused_options(&cases).await;
}
