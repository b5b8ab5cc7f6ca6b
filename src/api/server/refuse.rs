//! Answering a connection and closing it gently: a connection refused by a cap, a request head
//! too large; lingering so the client reads the answer instead of a reset.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warp::http::StatusCode;

use super::head_scan::HeadScan;
use super::{Closed, Limits};
use crate::api::errors::ApiError;

/// How long a connection closed with an answer is still read (and what it sends discarded), so
/// the client gets the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);

/// Refused connections being answered at once; beyond, refused connections are just closed.
pub(super) const MAX_REFUSING: usize = 256;

/// The answer to a connection refused by a cap: 429 `too_many_connections` for its client's
/// cap, 503 `server_busy` for the total; either says to retry after a second.
pub(super) fn refusal(reason: Closed, limits: &Limits) -> ApiError {
    let mut error = match reason {
        Closed::ClientLimit => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!(
                "this client already has {} connections open; reuse them",
                limits.max_per_client
            ),
        ),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "the server has too many connections open; try again shortly",
        ),
    };
    error.retry_after = Some(Duration::from_secs(1));
    error
}

/// Reads the request head (for a moment, up to 16 KiB), answers `error` and closes: a
/// connection refused by a cap. An answer that came before its request was sent would be
/// taken by an HTTP client for a broken connection, not for the answer.
pub(super) async fn refuse(mut stream: TcpStream, error: ApiError) {
    let mut scan = HeadScan::default();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 || scan.feed(&buf[..n], 16 * 1024).is_err() || scan.complete {
                break;
            }
        }
    })
    .await;
    answer_and_close(stream, error).await;
}

/// Writes `error` as a whole response, then closes the connection gently ([`linger`]).
pub(super) async fn answer_and_close(mut stream: TcpStream, error: ApiError) {
    let raw = error.into_raw_response(&crate::api::request_id(None));
    if let Ok(Ok(())) = tokio::time::timeout(LINGER, stream.write_all(&raw)).await {
        linger(stream).await;
    }
}

/// Closes our side, then reads and discards what the client still sends (for [`LINGER`], up
/// to 8 MiB) before the socket is dropped: closing a socket with unread data resets the
/// connection, and a client still sending a body it was answered early about (a 413) would
/// then see a broken pipe instead of the answer.
pub(super) async fn linger(mut stream: TcpStream) {
    let _ = tokio::time::timeout(LINGER, async {
        if stream.shutdown().await.is_ok() {
            let mut sink = [0u8; 16 * 1024];
            let mut left: usize = 8 << 20;
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 || n >= left {
                    break;
                }
                left -= n;
            }
        }
    })
    .await;
}
