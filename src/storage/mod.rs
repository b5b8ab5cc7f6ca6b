//! Objects in the operator's S3-compatible bucket (`[storage]`): put, get, delete, and the URL
//! a customer fetches one from (presigned GET, or the bucket's public base URL). The only module
//! that knows `object_store`. Keys are whole object keys in the bucket; [`keys`] names the ones
//! `store=true` captures get. Shared by the API (stored captures) and anything else that wants
//! bytes every host can read (a capture cache).
//!
//! Every call ends within `storage.timeout_ms` (a stalled bucket answers
//! [`StorageError::Timeout`]); a caller with a deadline of its own wraps the call in it too.
//! Credentials come only from the environment and never appear in an error: every message is
//! scrubbed of them before it leaves this module.

pub mod keys;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, ClientOptions, ObjectStore,
    ObjectStoreExt, PutOptions, PutPayload, RetryConfig,
};

use crate::config::StorageConfig;

/// The environment variables credentials are read from (and only from).
pub const ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";
pub const SESSION_TOKEN_ENV: &str = "AWS_SESSION_TOKEN";

/// What went wrong with a call to the bucket. Messages never carry a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The configuration or the environment cannot make a client (at start).
    #[error("storage is not usable: {0}")]
    Config(String),
    /// A key that is not a plain object key (empty segments, `.` or `..`, a leading `/`).
    #[error("`{0}` is not a valid object key")]
    InvalidKey(String),
    /// The bucket did not answer in time.
    #[error("the bucket did not answer within {0:?}")]
    Timeout(Duration),
    /// The bucket refused the request (credentials, permissions, a missing bucket).
    #[error("the bucket refused the request: {0}")]
    Refused(String),
    /// The bucket could not be reached, or failed.
    #[error("the bucket is unreachable or failed: {0}")]
    Unavailable(String),
}

impl StorageError {
    /// A stable one-word name (logs, metrics labels).
    pub fn kind(&self) -> &'static str {
        match self {
            StorageError::Config(_) => "config",
            StorageError::InvalidKey(_) => "invalid_key",
            StorageError::Timeout(_) => "timeout",
            StorageError::Refused(_) => "refused",
            StorageError::Unavailable(_) => "unavailable",
        }
    }
}

/// What is known of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key in the bucket.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its `Content-Type`, as stored.
    pub content_type: Option<String>,
    pub last_modified: SystemTime,
    pub e_tag: Option<String>,
    /// Its user metadata (`x-amz-meta-<name>`), names as S3 returns them (lowercase).
    pub metadata: Vec<(String, String)>,
}

/// A handle on the bucket; cheap to clone (one connection pool for every clone).
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    s3: AmazonS3,
    bucket: String,
    prefix: String,
    presign_ttl: Duration,
    public_base_url: Option<url::Url>,
    timeout: Duration,
    /// Strings that must never appear in an error message: the credentials.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("bucket", &self.inner.bucket)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// The credentials, read from the environment.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, when set, `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<Credentials, StorageError> {
        let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (read(ACCESS_KEY_ENV), read(SECRET_KEY_ENV)) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: read(SESSION_TOKEN_ENV),
            }),
            _ => Err(StorageError::Config(format!(
                "storage.bucket is set but {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} are not both in \
                 the environment (credentials are read only from there: /etc/shotfarm/shotfarm.env)"
            ))),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(…)")
    }
}

impl Storage {
    /// The bucket `[storage]` names, with credentials from the environment; `None` when
    /// storage is off (no bucket).
    pub fn from_config(config: &StorageConfig) -> Result<Option<Storage>, StorageError> {
        if !config.enabled() {
            return Ok(None);
        }
        Self::with_credentials(config, Credentials::from_env()?).map(Some)
    }

    /// The bucket `config` names, with these credentials (whatever `config.bucket` says).
    pub fn with_credentials(
        config: &StorageConfig,
        credentials: Credentials,
    ) -> Result<Storage, StorageError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(StorageError::Config(problems.join("; ")));
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut secrets = vec![
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
        ];
        secrets.extend(credentials.session_token.clone());
        // The client's own request timeout is a little longer than the call's, so a stalled
        // bucket is always answered by the call's timeout ([`StorageError::Timeout`]).
        let options = ClientOptions::new()
            .with_timeout(timeout + Duration::from_millis(500))
            .with_connect_timeout(timeout.min(Duration::from_secs(5)))
            .with_allow_http(config.endpoint.starts_with("http://"));
        // A few quick retries of what S3 asks to retry, all within the call's own timeout.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: timeout,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(token) = credentials.session_token {
            builder = builder.with_token(token);
        }
        if !config.endpoint.is_empty() {
            builder = builder.with_endpoint(endpoint_url(config));
        }
        let s3 = builder
            .build()
            .map_err(|e| StorageError::Config(scrub(&e.to_string(), &secrets)))?;
        let public_base_url = match config.public_base_url.as_str() {
            "" => None,
            base => Some(
                url::Url::parse(base)
                    .map_err(|e| StorageError::Config(format!("storage.public_base_url: {e}")))?,
            ),
        };
        Ok(Storage {
            inner: Arc::new(Inner {
                s3,
                bucket: config.bucket.clone(),
                prefix: config.prefix.clone(),
                presign_ttl: Duration::from_secs(config.presign_ttl_secs),
                public_base_url,
                timeout,
                secrets,
            }),
        })
    }

    /// `storage.prefix`: where this daemon's objects go (empty: the bucket's root).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// How long a presigned URL lives; `None` when URLs are public (they do not expire).
    pub fn url_lifetime(&self) -> Option<Duration> {
        match self.inner.public_base_url {
            Some(_) => None,
            None => Some(self.inner.presign_ttl),
        }
    }

    /// Stores `bytes` at `key` (replacing what was there) with its content type and user
    /// metadata (`x-amz-meta-<name>`; names are lowercased by S3, values should be ASCII).
    pub async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<(), StorageError> {
        let path = object_path(key)?;
        let mut attributes = Attributes::with_capacity(metadata.len() + 1);
        attributes.insert(
            Attribute::ContentType,
            AttributeValue::from(content_type.to_string()),
        );
        for (name, value) in metadata {
            attributes.insert(
                Attribute::Metadata(name.to_ascii_lowercase().into()),
                AttributeValue::from(value.clone()),
            );
        }
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.bounded(
            self.inner
                .s3
                .put_opts(&path, PutPayload::from(bytes), options),
        )
        .await
        .map(|_| ())
    }

    /// The object at `key` and what is known of it; `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<(Bytes, ObjectInfo)>, StorageError> {
        let path = object_path(key)?;
        let read = async {
            let result = self.inner.s3.get(&path).await?;
            let (meta, attributes) = (result.meta.clone(), result.attributes.clone());
            let bytes = result.bytes().await?;
            Ok::<_, object_store::Error>((bytes, meta, attributes))
        };
        let (bytes, meta, attributes) = match self.within_timeout(read).await {
            Ok(found) => found,
            Err(Failure::Store(object_store::Error::NotFound { .. })) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let mut content_type = None;
        let mut metadata = Vec::new();
        for (attribute, value) in attributes.iter() {
            match attribute {
                Attribute::ContentType => content_type = Some(value.to_string()),
                Attribute::Metadata(name) => metadata.push((name.to_string(), value.to_string())),
                _ => {}
            }
        }
        metadata.sort();
        let info = ObjectInfo {
            key: key.to_string(),
            size: meta.size,
            content_type,
            last_modified: SystemTime::from(meta.last_modified),
            e_tag: meta.e_tag,
            metadata,
        };
        Ok(Some((bytes, info)))
    }

    /// Deletes the object at `key`; deleting one that is not there is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = object_path(key)?;
        match self.within_timeout(self.inner.s3.delete(&path)).await {
            Ok(()) | Err(Failure::Store(object_store::Error::NotFound { .. })) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Where a customer fetches the object at `key`: `public_base_url/<key>` when the bucket is
    /// public, else a GET URL presigned for `storage.presign_ttl_secs`.
    pub async fn url(&self, key: &str) -> Result<String, StorageError> {
        let path = object_path(key)?;
        if let Some(base) = &self.inner.public_base_url {
            return Ok(public_url(base, key));
        }
        let signed = self
            .inner
            .s3
            .signed_url(http::Method::GET, &path, self.inner.presign_ttl);
        self.bounded(signed).await.map(|url| url.to_string())
    }

    /// `call` within the configured timeout, its error scrubbed of credentials.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T, StorageError> {
        self.within_timeout(call).await.map_err(|e| self.error(e))
    }

    async fn within_timeout<T>(
        &self,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.inner.timeout, call).await {
            Err(_) => Err(Failure::Timeout),
            Ok(result) => result.map_err(Failure::Store),
        }
    }

    fn error(&self, failure: Failure) -> StorageError {
        let e = match failure {
            Failure::Timeout => return StorageError::Timeout(self.inner.timeout),
            Failure::Store(e) => e,
        };
        let message = scrub(&e.to_string(), &self.inner.secrets);
        match e {
            object_store::Error::InvalidPath { .. } => StorageError::InvalidKey(message),
            object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. } => StorageError::Refused(message),
            _ => StorageError::Unavailable(message),
        }
    }
}

/// A call that did not succeed, before it is put in words.
enum Failure {
    Timeout,
    Store(object_store::Error),
}

/// `key` as a path, refused unless it is exactly a plain key (no normalisation happens).
fn object_path(key: &str) -> Result<Path, StorageError> {
    match Path::parse(key) {
        Ok(path) if !key.is_empty() && path.as_ref() == key => Ok(path),
        _ => Err(StorageError::InvalidKey(key.chars().take(200).collect())),
    }
}

/// The endpoint as object_store wants it: with the bucket in the host name for
/// virtual-hosted-style requests (`https://bucket.minio.example`).
fn endpoint_url(config: &StorageConfig) -> String {
    let endpoint = config.endpoint.trim_end_matches('/');
    if config.path_style {
        return endpoint.to_string();
    }
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}.{rest}", config.bucket),
        None => endpoint.to_string(),
    }
}

/// `base/<key>`, each of the key's segments percent-encoded as a path segment.
fn public_url(base: &url::Url, key: &str) -> String {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(key.split('/'));
    }
    url.to_string()
}

/// `message` with every secret replaced, and cut to a readable length.
fn scrub(message: &str, secrets: &[String]) -> String {
    let mut clean = message.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        clean = clean.replace(secret.as_str(), "[redacted]");
    }
    if clean.len() > 1000 {
        let mut cut = 1000;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
        clean.push('…');
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StorageConfig {
        StorageConfig {
            bucket: "shots".into(),
            endpoint: "http://127.0.0.1:9".into(),
            path_style: true,
            timeout_ms: 300,
            ..StorageConfig::default()
        }
    }

    fn credentials() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("SESSIONTOKEN123".into()),
        }
    }

    #[test]
    fn keys_must_be_plain() {
        for ok in ["a", "captures/acct/x.png", "a/b/c-d_e.webp"] {
            assert!(object_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a/../b", "a/./b", ".."] {
            assert!(
                matches!(object_path(bad), Err(StorageError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn endpoints_follow_the_url_style() {
        let mut c = config();
        assert_eq!(endpoint_url(&c), "http://127.0.0.1:9");
        c.path_style = false;
        c.endpoint = "https://minio.example:9000/".into();
        assert_eq!(endpoint_url(&c), "https://shots.minio.example:9000");
    }

    #[test]
    fn public_urls_encode_each_segment() {
        let base = url::Url::parse("https://cdn.example/shots/").expect("url");
        assert_eq!(
            public_url(&base, "captures/a b/x.png"),
            "https://cdn.example/shots/captures/a%20b/x.png"
        );
        let bare = url::Url::parse("https://cdn.example").expect("url");
        assert_eq!(public_url(&bare, "k.png"), "https://cdn.example/k.png");
    }

    #[test]
    fn secrets_are_scrubbed() {
        let secrets = vec!["AKIDEXAMPLE".to_string(), "s3cr3t".to_string()];
        let clean = scrub("denied for AKIDEXAMPLE with s3cr3t and s3cr3t", &secrets);
        assert_eq!(
            clean,
            "denied for [redacted] with [redacted] and [redacted]"
        );
        assert!(format!("{:?}", credentials()).find("AKID").is_none());
    }

    #[test]
    fn off_without_a_bucket() {
        let off = StorageConfig::default();
        assert!(matches!(Storage::from_config(&off), Ok(None)));
    }

    /// A bucket that is not there: each call fails within the timeout, as an error that names
    /// no credential.
    #[tokio::test]
    async fn an_unreachable_bucket_fails_fast_and_leaks_nothing() {
        let storage = Storage::with_credentials(&config(), credentials()).expect("client");
        let started = std::time::Instant::now();
        let errors = [
            storage
                .put("a/b.png", Bytes::from_static(b"x"), "image/png", &[])
                .await
                .err(),
            storage.get("a/b.png").await.err(),
            storage.delete("a/b.png").await.err(),
        ];
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        for e in errors {
            let e = e.expect("an unreachable bucket is an error");
            assert!(
                matches!(e, StorageError::Unavailable(_) | StorageError::Timeout(_)),
                "{e:?}"
            );
            let text = format!("{e} {e:?}");
            for secret in ["AKIDEXAMPLE", "wJalrXUtnFEMI", "SESSIONTOKEN123"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
        // A presigned URL is made locally: it carries the key id (as S3 wants), never the secret.
        let url = storage.url("a/b.png").await.expect("a presigned URL");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(url.contains("X-Amz-Expires=3600"), "{url}");
        assert!(!url.contains("wJalrXUtnFEMI"), "{url}");
    }
}
