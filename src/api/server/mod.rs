//! Serving HTTP/1.1 on a listener with bounded connections: our own accept loop in front of
//! hyper's connection, so that nobody can hold the daemon's sockets for free.
//!
//! - **Connection caps**: at most `server.max_connections` open at once, and at most
//!   `server.max_connections_per_client` from one client address (IPv6: one /64). A connection
//!   over a cap is answered at once — 429 `too_many_connections` (its client's cap) or 503
//!   `server_busy` (the total) with the JSON error body — and closed.
//! - **Header timeout**: a request head must arrive whole within `server.header_timeout_ms`,
//!   counted from the connection's opening for its first request and from the head's first byte
//!   for later ones (slowloris; connections opened and left silent).
//! - **Idle timeout**: a keep-alive connection with no request in progress and no byte moving
//!   either way for `server.idle_timeout_ms` is closed.
//! - **Head size**: a request line and headers larger than `server.max_request_head_bytes` (or
//!   more than [`MAX_HEADERS`] header lines) get 414 `uri_too_long` or 431 `headers_too_large`
//!   with the JSON body, instead of hyper's own empty 414/431 (its limits are higher, so ours
//!   answer first).
//!
//! A request in progress — from its head's last byte until its response has been handed to
//! hyper — is never cut by these limits, however long the capture takes; writing a response
//! counts as activity, so a slow reader is only cut once it reads nothing for the idle timeout.
//! Closing by these limits is counted in `shotfarm_http_connections_closed_total{reason}`.
//!
//! hyper's own `header_read_timeout` is not used: it starts whenever hyper waits for a head,
//! including the idle wait between keep-alive requests, so it cannot tell an idle connection
//! from a slow head.
//!
//! Its parts: `tracker` counts open connections (the caps), `connection` runs one (its watchdog
//! and its end), `tracked` marks requests in progress, `activity` is what the watchdog knows,
//! `guarded_io` and `head_scan` watch the bytes, `refuse` answers and closes.

mod activity;
mod connection;
mod guarded_io;
mod head_scan;
mod refuse;
mod tracked;
mod tracker;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_service::Service;
use warp::http::Request;
use warp::reply::Response;
use warp::Filter;

use crate::config::ServerConfig;
use crate::telemetry::events::{ConnectionClosed, InternalEvent, Label};
use crate::telemetry::Metrics;
use connection::Connection;
use refuse::{refusal, refuse, MAX_REFUSING};
use tracker::Tracker;

pub use guarded_io::RequestBody;

/// Header lines a request head may have (hyper's own default limit is 100 headers).
pub const MAX_HEADERS: usize = 100;

/// Why a connection was closed or refused: the closed label set of
/// `shotfarm_http_connections_closed_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    HeaderTimeout,
    IdleTimeout,
    HeadTooLarge,
    ClientLimit,
    TotalLimit,
}

impl Closed {
    pub const ALL: [Closed; 5] = [
        Closed::HeaderTimeout,
        Closed::IdleTimeout,
        Closed::HeadTooLarge,
        Closed::ClientLimit,
        Closed::TotalLimit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::HeadTooLarge => "head_too_large",
            Closed::ClientLimit => "client_limit",
            Closed::TotalLimit => "total_limit",
        }
    }
}

impl Label for Closed {
    const ALL: &'static [Closed] = &Closed::ALL;

    fn label(self) -> &'static str {
        Closed::label(self)
    }
}

/// Counts (and logs) a connection closed or refused for `reason`, when the listener counts.
pub(super) fn closed(metrics: Option<&Metrics>, reason: Closed, peer: SocketAddr) {
    if let Some(m) = metrics {
        ConnectionClosed { reason, peer }.emit(m);
    }
}

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_per_client: usize,
    pub max_head_bytes: usize,
}

impl Limits {
    pub fn from_config(server: &ServerConfig) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(server.header_timeout_ms),
            idle_timeout: Duration::from_millis(server.idle_timeout_ms),
            max_connections: server.max_connections,
            max_per_client: server.max_connections_per_client,
            max_head_bytes: server.max_request_head_bytes,
        }
    }

    /// How often a connection with a request in progress looks again whether it went idle.
    fn tick(&self) -> Duration {
        (self.header_timeout.min(self.idle_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// The client address of the connection a request came on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// A filter extracting the client's address (`None` only for requests that did not come through
/// [`serve`], e.g. `warp::test`).
pub fn client_addr() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<ClientAddr>().map(|c: Option<ClientAddr>| c.map(|c| c.0))
}

/// A request as the routes receive it.
type Req = Request<RequestBody>;

/// The routes a listener serves: a tower service of requests with a [`RequestBody`] that never
/// fails and whose answers may move between threads. Every such service is one.
pub trait Routes:
    Service<Req, Response = Response, Error = Infallible, Future: Send + 'static> + Shared
{
}

impl<S> Routes for S where
    S: Service<Req, Response = Response, Error = Infallible, Future: Send + 'static> + Shared
{
}

/// What the routes must be to serve every connection: cloneable, shareable between threads.
pub trait Shared: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> Shared for T {}

/// Serves `service` on `listener` until `stop` turns true, then stops accepting, lets every
/// open connection finish the request it is serving (idle ones close at once), and returns when
/// all are closed. `metrics`: where to count closed connections (the API listener's).
pub async fn serve<S: Routes>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    metrics: Option<Arc<Metrics>>,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(m) = &metrics {
        ConnectionClosed::<Closed>::register(m);
    }
    let tracker = Arc::new(Tracker::default());
    let refusing = Arc::new(AtomicUsize::new(0));
    let service = Arc::new(service);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        match tracker.admit(peer.ip(), &limits) {
            Ok(mut permit) => {
                if let Some(m) = &metrics {
                    m.http_connections_open.inc();
                    permit.metrics = Some(m.clone());
                }
                let connection = Connection {
                    service: service.clone(),
                    limits,
                    metrics: metrics.clone(),
                    stop: stop.clone(),
                };
                tokio::spawn(connection.run(stream, peer, permit));
            }
            Err(reason) => {
                closed(metrics.as_deref(), reason, peer);
                let error = refusal(reason, &limits);
                // Answering takes a moment per connection; a flood of refused connections is
                // closed at once instead of holding sockets for that moment.
                if refusing.load(Ordering::Relaxed) < MAX_REFUSING {
                    let refusing = refusing.clone();
                    refusing.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        refuse(stream, error).await;
                        refusing.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }
        }
    }
    drop(listener);
    tracker.wait_empty().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_has_its_series_at_zero() {
        let metrics = Metrics::new();
        ConnectionClosed::<Closed>::register(&metrics);
        let text = metrics.render();
        for reason in Closed::ALL {
            let series = format!(
                "shotfarm_http_connections_closed_total{{reason=\"{}\"}} 0",
                reason.label()
            );
            assert!(text.contains(&series), "{series}:\n{text}");
        }
    }
}
