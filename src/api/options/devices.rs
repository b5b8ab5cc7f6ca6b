//! The `device` option: common phones, tablets and desktops as a capture sees them (viewport in
//! CSS pixels, device scale factor, user agent, mobile layout and touch). Explicit `width`,
//! `height`, `device_scale_factor` and `user_agent` options override a preset's.

/// One device preset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Device {
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    pub scale: f64,
    /// `None`: the browser's own user agent.
    pub user_agent: Option<&'static str>,
    /// Mobile layout (the viewport meta tag is honoured, scrollbars overlay).
    pub mobile: bool,
    pub touch: bool,
}

const IOS_17: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const IPADOS_17: &str = "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const ANDROID_PIXEL: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";
const ANDROID_GALAXY: &str = "Mozilla/5.0 (Linux; Android 14; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";
const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const MAC_SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";

/// Every preset, by its `device` name.
pub const DEVICES: &[Device] = &[
    Device {
        name: "iphone_15_pro",
        width: 393,
        height: 852,
        scale: 3.0,
        user_agent: Some(IOS_17),
        mobile: true,
        touch: true,
    },
    Device {
        name: "iphone_15_pro_max",
        width: 430,
        height: 932,
        scale: 3.0,
        user_agent: Some(IOS_17),
        mobile: true,
        touch: true,
    },
    Device {
        name: "iphone_se",
        width: 375,
        height: 667,
        scale: 2.0,
        user_agent: Some(IOS_17),
        mobile: true,
        touch: true,
    },
    Device {
        name: "pixel_8",
        width: 412,
        height: 915,
        scale: 2.625,
        user_agent: Some(ANDROID_PIXEL),
        mobile: true,
        touch: true,
    },
    Device {
        name: "galaxy_s23",
        width: 360,
        height: 780,
        scale: 3.0,
        user_agent: Some(ANDROID_GALAXY),
        mobile: true,
        touch: true,
    },
    Device {
        name: "ipad_air",
        width: 820,
        height: 1180,
        scale: 2.0,
        user_agent: Some(IPADOS_17),
        mobile: true,
        touch: true,
    },
    Device {
        name: "ipad_pro_12_9",
        width: 1024,
        height: 1366,
        scale: 2.0,
        user_agent: Some(IPADOS_17),
        mobile: true,
        touch: true,
    },
    Device {
        name: "galaxy_tab_s9",
        width: 800,
        height: 1280,
        scale: 2.0,
        user_agent: Some(ANDROID_TABLET),
        mobile: true,
        touch: true,
    },
    Device {
        name: "macbook_pro_14",
        width: 1512,
        height: 982,
        scale: 2.0,
        user_agent: Some(MAC_SAFARI),
        mobile: false,
        touch: false,
    },
    Device {
        name: "desktop_hd",
        width: 1366,
        height: 768,
        scale: 1.0,
        user_agent: None,
        mobile: false,
        touch: false,
    },
    Device {
        name: "desktop_full_hd",
        width: 1920,
        height: 1080,
        scale: 1.0,
        user_agent: None,
        mobile: false,
        touch: false,
    },
    Device {
        name: "desktop_4k",
        width: 3840,
        height: 2160,
        scale: 1.0,
        user_agent: None,
        mobile: false,
        touch: false,
    },
];

/// The preset named `name` (case-insensitive; `-` and spaces read as `_`).
pub fn find(name: &str) -> Option<&'static Device> {
    let wanted = name.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    DEVICES.iter().find(|d| d.name == wanted)
}

/// The preset names, for an error message.
pub fn names() -> String {
    DEVICES
        .iter()
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_unique_and_sane() {
        let mut names: Vec<_> = DEVICES.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEVICES.len());
        assert!(DEVICES.len() >= 10);
        for d in DEVICES {
            assert!(
                d.width > 0 && d.height > 0 && (1.0..=3.0).contains(&d.scale),
                "{d:?}"
            );
            assert_eq!(find(&d.name.replace('_', "-").to_uppercase()), Some(d));
        }
        assert_eq!(find("nokia_3310"), None);
    }
}
