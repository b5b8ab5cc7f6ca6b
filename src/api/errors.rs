//! The error body every failed request gets: `{"error": {"code", "message"}, "request_id"}`,
//! with a stable code and a fitting status. What is logged and what the client sees are kept
//! apart: internal details never reach the client.

use std::time::Duration;

use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::farm::CaptureError;

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
