//! `[storage]`: an S3-compatible bucket that `store=true` captures are uploaded to (and that a
//! shared capture cache may use). Off while `bucket` is empty. Credentials never come from here:
//! the daemon reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` from
//! its environment (`systemd/shotfarm.env.example`).

use serde::{Deserialize, Serialize};

/// S3's own limit on a presigned URL's lifetime: 7 days.
pub const MAX_PRESIGN_TTL_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct StorageConfig {
    /// The bucket's name; empty = storage is off (`store=true` is refused, 400).
    pub bucket: String,
    /// The bucket's region (`us-east-1`, or what an S3-compatible server expects).
    pub region: String,
    /// An S3-compatible server's base URL (`https://minio.example:9000`); empty = AWS S3.
    pub endpoint: String,
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual-hosted ones
    /// (`bucket.endpoint/key`): most S3-compatible servers want this.
    pub path_style: bool,
    /// The first part of every object key (`captures` → `captures/<account>/…`); empty = none.
    pub prefix: String,
    /// Lifetime of the presigned GET URLs answered for stored captures, in seconds (at most
    /// 7 days, S3's limit).
    pub presign_ttl_secs: u64,
    /// When the bucket is readable by everyone (or through a CDN): answer
    /// `public_base_url/<key>` instead of a presigned URL; empty = presigned URLs.
    pub public_base_url: String,
    /// How long one call to the bucket may take, in milliseconds (an upload also ends at its
    /// capture's deadline).
    pub timeout_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            region: "us-east-1".to_string(),
            endpoint: String::new(),
            path_style: false,
            prefix: "captures".to_string(),
            presign_ttl_secs: 3600,
            public_base_url: String::new(),
            timeout_ms: 10_000,
        }
    }
}

impl StorageConfig {
    /// Whether storage is on (a bucket is named).
    pub fn enabled(&self) -> bool {
        !self.bucket.is_empty()
    }

    /// Every problem of this section, in words (`storage.<key>: …`).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=MAX_PRESIGN_TTL_SECS).contains(&self.presign_ttl_secs) {
            problems.push(format!(
                "storage.presign_ttl_secs: must be between 1 and {MAX_PRESIGN_TTL_SECS} (7 days, S3's limit), got {}",
                self.presign_ttl_secs
            ));
        }
        if !(100..=600_000).contains(&self.timeout_ms) {
            problems.push(format!(
                "storage.timeout_ms: must be between 100 and 600000, got {}",
                self.timeout_ms
            ));
        }
        if !self.prefix.is_empty() && !is_object_name(&self.prefix) {
            problems.push(format!(
                "storage.prefix: `{}` is not a relative object name (segments of letters, digits, `_` and `-`, single dots between them, joined by `/`)",
                self.prefix
            ));
        }
        for (key, value) in [
            ("storage.endpoint", &self.endpoint),
            ("storage.public_base_url", &self.public_base_url),
        ] {
            if let Err(why) = check_base_url(value) {
                problems.push(format!("{key}: {why}"));
            }
        }
        if !self.enabled() {
            return problems;
        }
        if !is_bucket_name(&self.bucket) {
            problems.push(format!(
                "storage.bucket: `{}` is not a bucket name (3 to 63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit)",
                self.bucket
            ));
        }
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 64
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            problems.push(format!(
                "storage.region: `{}` is not a region (lowercase letters, digits and `-`, such as us-east-1)",
                self.region
            ));
        }
        problems
    }
}

/// A relative object name: segments joined by `/`, each made of words of ASCII letters, digits,
/// `_` and `-` with single dots between them (`2026/shot-1.png`): so no empty segment, no `.` or
/// `..`, no leading `/`; at most 512 bytes. The same rule as the `store_path` capture option
/// (whose documented pattern is [`OBJECT_NAME_PATTERN`]).
pub fn is_object_name(name: &str) -> bool {
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    };
    name.len() <= 512 && name.split('/').all(|segment| segment.split('.').all(word))
}

/// [`is_object_name`] as a regular expression (the OpenAPI document's `pattern`).
pub const OBJECT_NAME_PATTERN: &str =
    "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*(/[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*)*$";

/// S3's bucket naming rules (the common subset every S3-compatible server takes).
fn is_bucket_name(name: &str) -> bool {
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(name.bytes().next())
        && edge(name.bytes().last())
        && !name.contains("..")
}

/// Empty, or an `http(s)://host[:port][/path]` URL without credentials, query or fragment.
fn check_base_url(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(format!("`{value}` must start with http:// or https://"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("`{value}` must start with http:// or https://"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("`{value}` has no host"));
    }
    if authority.contains('@') {
        return Err(
            "must not carry credentials (they come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment)"
                .to_string(),
        );
    }
    if rest.contains(['?', '#']) || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{value}` must be a plain base URL (no query, fragment or spaces)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> StorageConfig {
        StorageConfig {
            bucket: "shots".into(),
            ..StorageConfig::default()
        }
    }

    #[test]
    fn off_by_default_and_valid() {
        let c = StorageConfig::default();
        assert!(!c.enabled());
        assert_eq!(c.problems(), Vec::<String>::new());
        assert_eq!(on().problems(), Vec::<String>::new());
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases: Vec<(StorageConfig, &str)> = vec![
            (
                StorageConfig {
                    bucket: "Bad_Bucket".into(),
                    ..on()
                },
                "storage.bucket",
            ),
            (
                StorageConfig {
                    bucket: "ab".into(),
                    ..on()
                },
                "storage.bucket",
            ),
            (
                StorageConfig {
                    bucket: "-shots".into(),
                    ..on()
                },
                "storage.bucket",
            ),
            (
                StorageConfig {
                    region: "".into(),
                    ..on()
                },
                "storage.region",
            ),
            (
                StorageConfig {
                    region: "US East".into(),
                    ..on()
                },
                "storage.region",
            ),
            (
                StorageConfig {
                    presign_ttl_secs: 0,
                    ..on()
                },
                "storage.presign_ttl_secs",
            ),
            (
                StorageConfig {
                    presign_ttl_secs: MAX_PRESIGN_TTL_SECS + 1,
                    ..on()
                },
                "storage.presign_ttl_secs",
            ),
            (
                StorageConfig {
                    timeout_ms: 10,
                    ..on()
                },
                "storage.timeout_ms",
            ),
            (
                StorageConfig {
                    endpoint: "minio:9000".into(),
                    ..on()
                },
                "storage.endpoint",
            ),
            (
                StorageConfig {
                    endpoint: "http://key:secret@minio:9000".into(),
                    ..on()
                },
                "storage.endpoint",
            ),
            (
                StorageConfig {
                    public_base_url: "ftp://cdn.example".into(),
                    ..on()
                },
                "storage.public_base_url",
            ),
            (
                StorageConfig {
                    public_base_url: "https://cdn.example/?x=1".into(),
                    ..on()
                },
                "storage.public_base_url",
            ),
            (
                StorageConfig {
                    prefix: "/captures".into(),
                    ..on()
                },
                "storage.prefix",
            ),
            (
                StorageConfig {
                    prefix: "a/../b".into(),
                    ..on()
                },
                "storage.prefix",
            ),
        ];
        for (config, key) in cases {
            let problems = config.problems();
            assert_eq!(problems.len(), 1, "{config:?}: {problems:?}");
            assert!(problems[0].starts_with(key), "{key}: {problems:?}");
        }
        // A credential in the endpoint is refused without repeating it.
        let leaky = StorageConfig {
            endpoint: "http://key:secret@minio:9000".into(),
            ..on()
        };
        assert!(!leaky.problems().join(" ").contains("secret"));
    }

    #[test]
    fn good_settings_pass() {
        let config = StorageConfig {
            bucket: "my.shots-2026".into(),
            region: "eu-central-1".into(),
            endpoint: "http://127.0.0.1:9000".into(),
            path_style: true,
            prefix: "shotfarm/captures".into(),
            presign_ttl_secs: MAX_PRESIGN_TTL_SECS,
            public_base_url: "https://cdn.example/shots".into(),
            timeout_ms: 5_000,
        };
        assert_eq!(config.problems(), Vec::<String>::new());
    }

    #[test]
    fn object_names() {
        for ok in ["a", "a/b.png", "2026/12/x_y-z.webp", "v1.2/a.b.c"] {
            assert!(is_object_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "..",
            "a/../b",
            "./a",
            ".hidden",
            "a..b",
            "a.",
            "a b",
            "a\\b",
            "é",
            "a?b",
            &"a".repeat(513),
        ] {
            assert!(!is_object_name(bad), "{bad:?}");
        }
    }
}
