//! Emulation: what the capture asks of its fresh page before navigating (viewport and device,
//! media features, user agent and locale, time zone, geolocation, extra headers, cookies, a
//! transparent background). Every override is the page's or its browser context's, so it ends
//! with the capture.

use chromiumoxide::cdp::browser_protocol::browser::{
    BrowserContextId, GetVersionParams, PermissionDescriptor, PermissionSetting,
    SetPermissionParams,
};
use chromiumoxide::cdp::browser_protocol::dom::Rgba;
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDefaultBackgroundColorOverrideParams, SetDeviceMetricsOverrideParams,
    SetEmulatedMediaParams, SetGeolocationOverrideParams, SetLocaleOverrideParams,
    SetTimezoneOverrideParams, SetTouchEmulationEnabledParams, SetUserAgentOverrideParams,
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
    context: &BrowserContextId,
    preset: Option<(u32, u32)>,
    spec: &CaptureSpec,
) -> Result<()> {
    let prepared = preset == Some((spec.width, spec.height))
        && spec.device_scale_factor == 1.0
        && !spec.mobile;
    if !prepared {
        page.execute(SetDeviceMetricsOverrideParams::new(
            spec.width,
            spec.height,
            spec.device_scale_factor,
            spec.mobile,
        ))
        .await?;
    }
    if spec.touch {
        let mut touch = SetTouchEmulationEnabledParams::new(true);
        touch.max_touch_points = Some(5);
        page.execute(touch).await?;
    }
    let mut features = Vec::new();
    if spec.dark_mode {
        features.push(MediaFeature::new("prefers-color-scheme", "dark"));
    }
    if spec.reduced_motion {
        features.push(MediaFeature::new("prefers-reduced-motion", "reduce"));
    }
    if !features.is_empty() || spec.media.is_some() {
        page.execute(SetEmulatedMediaParams {
            media: spec.media.map(|m| m.as_str().to_string()),
            features: (!features.is_empty()).then_some(features),
        })
        .await?;
    }
    if spec.user_agent.is_some() || spec.locale.is_some() {
        // The locale's `Accept-Language` and `navigator.language` ride on the user agent
        // override, which needs a user agent: the browser's own unless one was asked for.
        let user_agent = match &spec.user_agent {
            Some(ua) => ua.clone(),
            None => {
                page.execute(GetVersionParams::default())
                    .await?
                    .result
                    .user_agent
            }
        };
        let mut params = SetUserAgentOverrideParams::new(user_agent);
        params.accept_language = spec.locale.clone();
        page.execute(params).await?;
    }
    if let Some(locale) = &spec.locale {
        // ICU's spelling: `de_DE`.
        page.execute(SetLocaleOverrideParams {
            locale: Some(locale.replace('-', "_")),
        })
        .await?;
    }
    if let Some(timezone) = &spec.timezone {
        page.execute(SetTimezoneOverrideParams::new(timezone.clone()))
            .await?;
    }
    if let Some(at) = spec.geolocation {
        page.execute(SetGeolocationOverrideParams {
            latitude: Some(at.latitude),
            longitude: Some(at.longitude),
            accuracy: Some(at.accuracy),
            ..Default::default()
        })
        .await?;
        // Granted to the page's origin, in this capture's own context only.
        let mut grant = SetPermissionParams::new(
            PermissionDescriptor::new("geolocation"),
            PermissionSetting::Granted,
        );
        grant.origin = Some(spec.url.origin().ascii_serialization());
        grant.browser_context_id = Some(context.clone());
        page.execute(grant).await?;
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
