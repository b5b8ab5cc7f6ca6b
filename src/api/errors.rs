//! The error body every failed request gets: `{"error": {"code", "message"}, "request_id"}`,
//! with a stable code and a fitting status. What is logged and what the client sees are kept
//! apart: internal details never reach the client.

use std::time::Duration;

use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::farm::CaptureError;

/// Every stable `code` the API layer answers with, beside the capture errors'
/// ([`CaptureError::CODES`]); the OpenAPI document's `ErrorCode` enum is [`all_codes`]. A test
/// finds every code the source gives an [`ApiError`] and checks it is listed here.
pub const API_CODES: &[&str] = &[
    "ambiguous_credentials",
    "bad_request",
    "cross_site_request",
    "email_taken",
    "headers_too_large",
    "idempotency_in_flight",
    "idempotency_key_reused",
    "idempotency_result_unavailable",
    "insufficient_credits",
    "internal",
    "invalid_api_key",
    "invalid_body",
    "invalid_credentials",
    "invalid_idempotency_key",
    "invalid_parameter",
    "invalid_signature",
    "ledger_unavailable",
    "length_required",
    "method_not_allowed",
    "navigation_failed",
    "not_found",
    "order_not_credited",
    "payload_too_large",
    "payment_provider_error",
    "payments_not_configured",
    "rate_limited",
    "server_busy",
    "session_expired",
    "signature_expired",
    "signup_disabled",
    "storage_failed",
    "too_many_connections",
    "too_many_in_flight",
    "too_many_jobs",
    "unauthorized",
    "unknown_pack",
    "uri_too_long",
    "url_not_allowed",
];

/// Every stable error `code`, sorted, each once: the API's and the captures'.
pub fn all_codes() -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = API_CODES
        .iter()
        .chain(CaptureError::CODES.iter())
        .copied()
        .collect();
    codes.sort_unstable();
    codes.dedup();
    codes
}

/// One invalid option.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub details: Vec<FieldError>,
    /// The HTTP status the captured page answered with (`target_http_error`).
    pub target_status: Option<u16>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
    request_id: &'a str,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    details: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    target_status: Option<u16>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            details: Vec::new(),
            target_status: None,
        }
    }

    /// 400 `invalid_parameter`, naming every bad field.
    pub fn invalid(details: Vec<FieldError>) -> Self {
        let message = details
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_parameter",
            message,
            retry_after: None,
            details,
            target_status: None,
        }
    }

    /// The JSON body of this error.
    fn body(&self, request_id: &str) -> Vec<u8> {
        let field = self.details.first().map(|d| d.field.as_str());
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field,
                details: if self.details.len() > 1 {
                    &self.details
                } else {
                    &[]
                },
                target_status: self.target_status,
            },
            request_id,
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The error as a whole HTTP/1.1 response that closes the connection, for the answers the
    /// connection layer writes itself, with no request parsed (or none to parse): connection
    /// limits and oversized request heads (`api::server`).
    pub fn into_raw_response(self, request_id: &str) -> Vec<u8> {
        let body = self.body(request_id);
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nx-request-id: {request_id}\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len()
        );
        if let Some(after) = self.retry_after {
            head.push_str(&format!("retry-after: {}\r\n", after.as_secs().max(1)));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(&body);
        raw
    }

    pub fn into_response(self, request_id: &str) -> Response {
        let json = self.body(request_id);
        let mut response = Response::new(json.into());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(after) = self.retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        super::set_request_id(&mut response, request_id);
        response
    }
}

impl From<CaptureError> for ApiError {
    fn from(e: CaptureError) -> Self {
        let status = match &e {
            CaptureError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            CaptureError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            CaptureError::NavigationFailed(_)
            | CaptureError::TargetHttpError(_)
            | CaptureError::EmptyPage => StatusCode::BAD_GATEWAY,
            CaptureError::SelectorNotFound(_) => StatusCode::NOT_FOUND,
            CaptureError::FunctionTimeout => StatusCode::UNPROCESSABLE_ENTITY,
            CaptureError::OutputTooLarge { .. }
            | CaptureError::PageCrashed
            | CaptureError::PdfNoPages => StatusCode::UNPROCESSABLE_ENTITY,
            CaptureError::InvalidSelector(_) | CaptureError::ScriptFailed(_) => {
                StatusCode::BAD_REQUEST
            }
            CaptureError::BrowserCrashed
            | CaptureError::BrowserError
            | CaptureError::ShuttingDown
            | CaptureError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            CaptureError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            // Internal details go to the log, not to the client.
            CaptureError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        let retry_after = match &e {
            CaptureError::QueueFull { retry_after } => Some(*retry_after),
            CaptureError::BrowserCrashed
            | CaptureError::BrowserError
            | CaptureError::ShuttingDown
            | CaptureError::Unavailable => Some(Duration::from_secs(1)),
            _ => None,
        };
        ApiError {
            status,
            code: e.code(),
            message,
            retry_after,
            details: Vec::new(),
            target_status: match e {
                CaptureError::TargetHttpError(status) => Some(status),
                _ => None,
            },
        }
    }
}

/// 503 `ledger_unavailable`: Redis did not answer; nothing was charged.
pub fn ledger_unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!("ledger unavailable: {e}");
    let mut error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ledger_unavailable",
        "the credit ledger is unavailable; nothing was charged, try again shortly",
    );
    error.retry_after = Some(std::time::Duration::from_secs(1));
    error
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                rs_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// `(file:line, code)` of every error code given in the crate's source (outside tests):
    /// the first string literal of each `ApiError::new(…)`, and each `code: "…"` / `"code": "…"`.
    fn codes_in_source() -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rs_files(&root, &mut files);
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let code_part = text.split("#[cfg(test)]").next().unwrap_or_default();
            let rel = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let line_of = |at: usize| code_part[..at].matches('\n').count() + 1;
            let literal_after = |from: usize| -> Option<String> {
                let start = from + code_part[from..].find('"')? + 1;
                let end = start + code_part[start..].find('"')?;
                Some(code_part[start..end].to_string())
            };
            for marker in ["ApiError::new(", "code: \"", "\"code\": \""] {
                for (at, _) in code_part.match_indices(marker) {
                    // `ApiError::new(` gives its status first, then the code.
                    let from = if marker.ends_with('"') {
                        at + marker.len() - 1
                    } else {
                        at
                    };
                    if let Some(code) = literal_after(from) {
                        found.push((format!("src/{rel}:{}", line_of(at)), code));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_code_the_source_gives_is_listed_and_every_listed_code_is_given() {
        let listed = all_codes();
        let found = codes_in_source();
        assert!(found.len() > 20, "the scan found too few codes: {found:?}");
        for (place, code) in &found {
            assert!(
                listed.contains(&code.as_str()),
                "error code `{code}` ({place}) is not in API_CODES (src/api/errors.rs): add it, \
                 so the OpenAPI document's ErrorCode enum lists it"
            );
        }
        for code in API_CODES {
            assert!(
                found.iter().any(|(_, c)| c == code),
                "`{code}` is in API_CODES but no code in src/ gives it: remove it"
            );
        }
        let mut sorted = API_CODES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, API_CODES, "API_CODES: sorted, each once");
    }
}
