//! Emulation: what the capture asks of its fresh page before navigating (viewport, dark mode,
//! user agent, extra headers, cookies, a transparent background).

use chromiumoxide::cdp::browser_protocol::dom::Rgba;
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDefaultBackgroundColorOverrideParams, SetDeviceMetricsOverrideParams,
    SetEmulatedMediaParams, SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::network::{
    CookieParam, EnableParams as NetworkEnableParams, Headers, SetCookiesParams,
    SetExtraHttpHeadersParams,
};
use chromiumoxide::Page;

use super::Result;
use crate::farm::job::{CaptureSpec, ImageFormat};

/// Sets what the capture asks for on its fresh page. `preset` is the viewport the tab was
/// prepared with, which is not set again.
pub(super) async fn emulate(
    page: &Page,
    preset: Option<(u32, u32)>,
    spec: &CaptureSpec,
) -> Result<()> {
    let prepared = preset == Some((spec.width, spec.height)) && spec.device_scale_factor == 1.0;
    if !prepared {
        page.execute(SetDeviceMetricsOverrideParams::new(
            spec.width,
            spec.height,
            spec.device_scale_factor,
            false,
        ))
        .await?;
    }
    if spec.dark_mode {
        page.execute(SetEmulatedMediaParams {
            features: Some(vec![MediaFeature::new("prefers-color-scheme", "dark")]),
            ..Default::default()
        })
        .await?;
    }
    if let Some(ua) = &spec.user_agent {
        page.execute(SetUserAgentOverrideParams::new(ua.clone()))
            .await?;
    }
    if !spec.headers.is_empty() {
        // Pages start without the Network domain (`lean_pages`), and Chromium sends extra
        // headers only while it is enabled.
        page.execute(NetworkEnableParams::default()).await?;
        let map: serde_json::Map<String, serde_json::Value> = spec
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        page.execute(SetExtraHttpHeadersParams::new(Headers::new(
            serde_json::Value::Object(map),
        )))
        .await?;
    }
    if !spec.cookies.is_empty() {
        let cookies = spec
            .cookies
            .iter()
            .map(|c| {
                let mut p = CookieParam::new(c.name.clone(), c.value.clone());
                if c.domain.is_none() {
                    p.url = Some(spec.url.to_string());
                }
                p.domain = c.domain.clone();
                p.path = c.path.clone();
                p.secure = c.secure;
                p.http_only = c.http_only;
                p
            })
            .collect::<Vec<_>>();
        page.execute(SetCookiesParams::new(cookies)).await?;
    }
    if spec.omit_background && spec.format != ImageFormat::Jpeg {
        let transparent = Rgba {
            r: 0,
            g: 0,
            b: 0,
            a: Some(0.0),
        };
        page.execute(SetDefaultBackgroundColorOverrideParams {
            color: Some(transparent),
        })
        .await?;
    }
    Ok(())
}
