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
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            details: Vec::new(),
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
        }
    }

    pub fn into_response(self, request_id: &str) -> Response {
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
            },
            request_id,
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
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
            CaptureError::NavigationFailed(_) => StatusCode::BAD_GATEWAY,
            CaptureError::SelectorNotFound(_) => StatusCode::NOT_FOUND,
            CaptureError::OutputTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
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
        }
    }
}
