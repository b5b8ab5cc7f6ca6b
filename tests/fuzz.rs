//! Property tests (proptest) on what strangers control: capture options and URLs.
//! - Option parsing never panics, whatever the JSON or query string, and everything it accepts
//!   respects the configured caps.
//! - No inward address, in any spelling, is ever judged allowed.
//!
//! `make test` runs the default 256 cases per property; `make fuzz` runs many more
//! (`PROPTEST_CASES`), bounded in time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use serde_json::{Map, Value};
use shotfarm::api::options::{parse, query_to_map};
use shotfarm::config::CaptureConfig;
use shotfarm::egress::policy::address_kind;
use shotfarm::egress::{EgressPolicy, UrlBlocked};

/// Option names the API knows, plus a few it does not.
const NAMES: &[&str] = &[
    "url",
    "format",
    "quality",
    "width",
    "height",
    "device_scale_factor",
    "full_page",
    "selector",
    "wait_until",
    "wait_for_selector",
    "delay",
    "timeout",
    "dark_mode",
    "hide_selectors",
    "css",
    "js",
    "user_agent",
    "headers",
    "cookies",
    "omit_background",
    "scroll_to_load",
    "response_type",
    "nope",
    "",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "https?://[a-z0-9.:\\[\\]@%-]{0,30}/?[ -~]{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn options() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((prop::sample::select(NAMES), json_value()), 0..10)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// A non-public IPv4 address drawn from the ranges the policy must refuse.
fn inward_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(127, b, c, d)),
        any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(10, b, c, d)),
        (16u8..32, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(172, b, c, d)),
        any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(192, 168, c, d)),
        any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(169, 254, c, d)),
        (64u8..128, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(100, b, c, d)),
        any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(0, b, c, d)),
        (224u8..=255, any::<[u8; 3]>()).prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d)),
    ]
}

/// The ways a URL can spell an IPv4 address.
fn spellings(ip: Ipv4Addr) -> Vec<String> {
    let [a, b, c, d] = ip.octets();
    let n = u32::from(ip);
    let mapped = ip.to_ipv6_mapped();
    let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, (n >> 16) as u16, n as u16);
    vec![
        format!("{a}.{b}.{c}.{d}"),
        format!("{n}"),
        format!("0x{n:x}"),
        format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
        format!(
            "{a}.{}",
            (u32::from(b) << 16) | (u32::from(c) << 8) | u32::from(d)
        ),
        format!("[{mapped}]"),
        format!("[::ffff:{a}.{b}.{c}.{d}]"),
        format!("[{nat64}]"),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #[test]
    fn json_options_never_panic_and_accepted_ones_respect_the_caps(map in options()) {
        let caps = CaptureConfig::default();
        if let Ok(request) = parse(map, &caps) {
            prop_assert!(matches!(request.spec.url.scheme(), "http" | "https"));
            prop_assert!(request.timeout.as_millis() <= u128::from(caps.max_timeout_ms));
            prop_assert!(request.spec.width <= caps.max_width && request.spec.height <= caps.max_height);
        }
    }

    #[test]
    fn query_strings_never_panic(query in "[ -~]{0,200}") {
        let _ = parse(query_to_map(&query), &CaptureConfig::default());
    }

    #[test]
    fn no_inward_ipv4_spelling_is_allowed(
        ip in inward_v4(),
        userinfo in prop::option::of("[a-z]{1,8}(:[a-z]{1,8})?@"),
        port in prop::option::of(1u16..),
        path in "(/[a-z0-9._-]{0,10}){0,3}",
    ) {
        let policy = EgressPolicy::default();
        let rt = runtime();
        for host in spellings(ip) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let raw = format!("http://{}{host}{port}{path}", userinfo.clone().unwrap_or_default());
            let Ok(url) = url::Url::parse(&raw) else { continue };
            let verdict = rt.block_on(policy.check_url(&url));
            prop_assert!(
                matches!(verdict, Err(UrlBlocked::Address { .. } | UrlBlocked::Resolved { .. })),
                "{raw} ({ip}): {verdict:?}"
            );
        }
    }

    #[test]
    fn no_ipv6_form_of_an_inward_ipv4_is_public(ip in inward_v4()) {
        let n = u32::from(ip);
        for v6 in [
            ip.to_ipv6_mapped(),
            ip.to_ipv6_compatible(),
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, (n >> 16) as u16, n as u16),
            Ipv6Addr::new(0x2002, (n >> 16) as u16, n as u16, 0, 0, 0, 0, 1),
        ] {
            prop_assert!(address_kind(IpAddr::V6(v6)).is_some(), "{v6}");
        }
    }
}
