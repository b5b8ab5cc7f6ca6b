//! One accepted connection: hyper's HTTP/1.1 on the guarded socket, its watchdog (header and
//! idle timeouts), graceful stop, and how it closes (the 414/431 answer, or lingering).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use warp::http::StatusCode;

use super::activity::Activity;
use super::guarded_io::GuardedIo;
use super::head_scan::{HeadScan, Oversized};
use super::refuse::{answer_and_close, linger};
use super::tracked::Tracked;
use super::tracker::Permit;
use super::{Closed, Limits, Routes, MAX_HEADERS};
use crate::api::errors::ApiError;
use crate::telemetry::Metrics;

/// One accepted connection and what it needs.
pub(super) struct Connection<S> {
    pub(super) service: Arc<S>,
    pub(super) limits: Limits,
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) stop: watch::Receiver<bool>,
}

enum Event {
    Ended(Result<(), hyper::Error>),
    Tick,
    Stop,
}

impl<S: Routes> Connection<S> {
    pub(super) async fn run(mut self, stream: TcpStream, peer: SocketAddr, permit: Permit) {
        let _permit = permit;
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = GuardedIo {
            inner: stream,
            activity: activity.clone(),
            max_head_bytes: self.limits.max_head_bytes,
            scan: HeadScan::default(),
            oversized: None,
        };
        let service = Tracked {
            inner: self.service.clone(),
            activity: activity.clone(),
            client: peer,
        };
        let mut conn = http1::Builder::new()
            // Ours is above; hyper's would also cut idle keep-alive connections.
            .header_read_timeout(None)
            .max_headers(MAX_HEADERS)
            .serve_connection(TokioIo::new(io), service);
        let mut stopping = false;
        let limits = self.limits;
        loop {
            let wake = match activity.deadline(&limits) {
                Some((at, _)) => at.min(Instant::now() + limits.tick()),
                None => Instant::now() + limits.tick(),
            };
            let event = tokio::select! {
                ended = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => Event::Ended(ended),
                _ = tokio::time::sleep_until(wake) => Event::Tick,
                _ = self.stop.wait_for(|s| *s), if !stopping => Event::Stop,
            };
            match event {
                Event::Ended(ended) => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    break;
                }
                Event::Tick => {
                    if let Some((at, reason)) = activity.deadline(&limits) {
                        if Instant::now() >= at {
                            super::closed(self.metrics.as_deref(), reason, peer);
                            return;
                        }
                    }
                }
                Event::Stop => {
                    stopping = true;
                    Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
        let io = conn.into_parts().io.into_inner();
        if let Some(what) = io.oversized {
            super::closed(self.metrics.as_deref(), Closed::HeadTooLarge, peer);
            let error = match what {
                Oversized::Uri => ApiError::new(
                    StatusCode::URI_TOO_LONG,
                    "uri_too_long",
                    format!(
                        "the request line is longer than {} bytes; send long options in a POST body",
                        limits.max_head_bytes
                    ),
                ),
                Oversized::Head => ApiError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers_too_large",
                    format!(
                        "the request head is larger than {} bytes or has more than {MAX_HEADERS} headers",
                        limits.max_head_bytes
                    ),
                ),
            };
            answer_and_close(io.inner, error).await;
        } else {
            linger(io.inner).await;
        }
    }
}
