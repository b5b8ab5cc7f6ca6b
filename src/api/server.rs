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

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use warp::http::{Request, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::errors::ApiError;
use crate::config::ServerConfig;
use crate::telemetry::Metrics;

/// Header lines a request head may have (hyper's own default limit is 100 headers).
pub const MAX_HEADERS: usize = 100;

/// How long a connection closed with an answer is still read (and what it sends discarded), so
/// the client gets the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);

/// Refused connections being answered at once; beyond, refused connections are just closed.
const MAX_REFUSING: usize = 256;

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

/// Serves `service` on `listener` until `stop` turns true, then stops accepting, lets every
/// open connection finish the request it is serving (idle ones close at once), and returns when
/// all are closed. `metrics`: where to count closed connections (the API listener's).
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    metrics: Option<Arc<Metrics>>,
    mut stop: watch::Receiver<bool>,
) where
    S: tower_service::Service<Request<RequestBody>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
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
        let count = |reason: Closed| {
            if let Some(m) = &metrics {
                m.http_connections_closed_total
                    .with_label_values(&[reason.label()])
                    .inc();
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
                count(reason);
                tracing::debug!(%peer, reason = reason.label(), "connection refused");
                let error = match reason {
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
                let mut error = error;
                error.retry_after = Some(Duration::from_secs(1));
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

/// Open connections, in total and per client.
#[derive(Default)]
struct Tracker {
    counts: Mutex<Counts>,
    empty: Notify,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it gives its place back.
struct Permit {
    tracker: Arc<Tracker>,
    client: IpAddr,
    metrics: Option<Arc<Metrics>>,
}

/// The address a client is counted by: IPv4 as is, IPv6 by its /64 (one host commonly has a
/// whole /64), IPv4-mapped IPv6 as IPv4.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Permit, Closed> {
        let client = client_key(ip);
        let mut counts = self.lock();
        let mine = counts.per_client.get(&client).copied().unwrap_or(0);
        if mine >= limits.max_per_client {
            return Err(Closed::ClientLimit);
        }
        if counts.total >= limits.max_connections {
            return Err(Closed::TotalLimit);
        }
        counts.total += 1;
        *counts.per_client.entry(client).or_insert(0) += 1;
        Ok(Permit {
            tracker: self.clone(),
            client,
            metrics: None,
        })
    }

    async fn wait_empty(&self) {
        loop {
            let emptied = self.empty.notified();
            if self.lock().total == 0 {
                return;
            }
            emptied.await;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.http_connections_open.dec();
        }
        let mut counts = self.tracker.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_client.remove(&self.client);
            }
        }
        if counts.total == 0 {
            self.tracker.empty.notify_waiters();
        }
    }
}

/// Reads the request head (for a moment, up to 16 KiB), answers `error` and closes: a
/// connection refused by a cap. An answer that came before its request was sent would be
/// taken by an HTTP client for a broken connection, not for the answer.
async fn refuse(mut stream: TcpStream, error: ApiError) {
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
async fn answer_and_close(mut stream: TcpStream, error: ApiError) {
    let raw = error.into_raw_response(&super::request_id(None));
    if let Ok(Ok(())) = tokio::time::timeout(LINGER, stream.write_all(&raw)).await {
        linger(stream).await;
    }
}

/// Closes our side, then reads and discards what the client still sends (for [`LINGER`], up
/// to 8 MiB) before the socket is dropped: closing a socket with unread data resets the
/// connection, and a client still sending a body it was answered early about (a 413) would
/// then see a broken pipe instead of the answer.
async fn linger(mut stream: TcpStream) {
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

/// What the watchdog of one connection knows about it, written by its I/O and its service
/// (all on the connection's task).
struct Activity {
    opened: Instant,
    /// Requests handed to the service and not answered yet.
    in_flight: AtomicUsize,
    /// Milliseconds since `opened`: when the connection last had nothing to do (answered its
    /// last request, or wrote a byte of a response).
    idle_since: AtomicU64,
    /// Milliseconds since `opened` of the first byte of the request head being read; [`NONE`]
    /// when no head is being read. A new connection waits for its first head from its opening.
    head_since: AtomicU64,
    /// Whether the bytes read next begin a request head that the size guard may judge (not
    /// while hyper may still be draining an unread request body).
    heads_checked: AtomicBool,
    /// Answers so far: the I/O restarts its head scan when it changes.
    answered: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            heads_checked: AtomicBool::new(true),
            answered: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
    }

    fn end(&self, body_read: bool) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
        self.heads_checked.store(body_read, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn read_some(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NONE
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    fn wrote_some(&self) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
    }

    /// When the connection must be closed if nothing changes, and why; `None` while a request
    /// is in progress.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Closed)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |ms: u64| self.opened + Duration::from_millis(ms);
        match self.head_since.load(Ordering::Relaxed) {
            NONE => Some((
                at(self.idle_since.load(Ordering::Relaxed)) + limits.idle_timeout,
                Closed::IdleTimeout,
            )),
            since => Some((at(since) + limits.header_timeout, Closed::HeaderTimeout)),
        }
    }
}

/// Which limit an oversized request head broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Oversized {
    /// The request line alone is over the limit.
    Uri,
    /// The headers are.
    Head,
}

/// Finds where a request head ends, counting its bytes and lines.
#[derive(Default)]
struct HeadScan {
    generation: u64,
    started: bool,
    bytes: usize,
    lines: usize,
    at_line_start: bool,
    complete: bool,
}

impl HeadScan {
    /// Feeds bytes read; `Err` once the head is over the limits.
    fn feed(&mut self, bytes: &[u8], max_bytes: usize) -> Result<(), Oversized> {
        for &b in bytes {
            if self.complete {
                return Ok(());
            }
            if !self.started {
                // Empty lines before a request line are ignored (RFC 9112, 2.2).
                if b == b'\r' || b == b'\n' {
                    continue;
                }
                self.started = true;
            }
            self.bytes += 1;
            match b {
                b'\n' if self.at_line_start => self.complete = true,
                b'\n' => {
                    self.lines += 1;
                    self.at_line_start = true;
                }
                b'\r' => {}
                _ => self.at_line_start = false,
            }
            if self.bytes > max_bytes || self.lines > MAX_HEADERS + 1 {
                return Err(if self.lines == 0 {
                    Oversized::Uri
                } else {
                    Oversized::Head
                });
            }
        }
        Ok(())
    }
}

/// The connection's socket, telling [`Activity`] what moves and guarding the size of heads.
pub struct GuardedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
    max_head_bytes: usize,
    scan: HeadScan,
    oversized: Option<Oversized>,
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.oversized.is_some() {
            return Poll::Ready(Err(io::Error::other("request head too large")));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let read = &buf.filled()[before..];
        if read.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let activity = &this.activity;
        activity.read_some();
        if activity.in_flight.load(Ordering::Relaxed) > 0 {
            return Poll::Ready(Ok(()));
        }
        let generation = activity.answered.load(Ordering::Relaxed);
        if this.scan.generation != generation {
            this.scan = HeadScan {
                generation,
                ..HeadScan::default()
            };
        }
        if activity.heads_checked.load(Ordering::Relaxed) {
            if let Err(what) = this.scan.feed(read, this.max_head_bytes) {
                this.oversized = Some(what);
                return Poll::Ready(Err(io::Error::other("request head too large")));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl GuardedIo {
    /// A write that moved bytes counts as activity for the idle timeout.
    fn note_written(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.wrote_some();
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_written(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_written(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request's body as the routes see it: hyper's, noting when it has been read to its end (a
/// body left unread is drained by hyper after the response, and those bytes are no head).
pub struct RequestBody {
    inner: Incoming,
    done: Arc<AtomicBool>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.done.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The routes as hyper calls them: marks each request in progress for the watchdog and hands it
/// the client's address.
struct Tracked<S> {
    inner: Arc<S>,
    activity: Arc<Activity>,
    client: SocketAddr,
}

/// Ends a request's time in progress however its future ends (answered or dropped).
struct InFlight {
    activity: Arc<Activity>,
    body_read: Arc<AtomicBool>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.end(self.body_read.load(Ordering::Relaxed));
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: tower_service::Service<Request<RequestBody>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, mut request: Request<Incoming>) -> Answer {
        self.activity.begin();
        request.extensions_mut().insert(ClientAddr(self.client));
        let body_read = Arc::new(AtomicBool::new(request.body().is_end_stream()));
        let guard = InFlight {
            activity: self.activity.clone(),
            body_read: body_read.clone(),
        };
        let request = request.map(|inner| RequestBody {
            inner,
            done: body_read.clone(),
        });
        let mut service = S::clone(&self.inner);
        let answer = tower_service::Service::call(&mut service, request);
        Box::pin(async move {
            let _in_flight = guard;
            let mut response = answer.await?;
            // Answered without reading the body (a 413, a 401 before the body): the rest of
            // it is not read, so the connection cannot carry another request; say so, or the
            // client would send its next one on a connection about to close.
            if !body_read.load(Ordering::Relaxed) {
                response.headers_mut().insert(
                    warp::http::header::CONNECTION,
                    warp::http::HeaderValue::from_static("close"),
                );
            }
            Ok(response)
        })
    }
}

/// One accepted connection and what it needs.
struct Connection<S> {
    service: Arc<S>,
    limits: Limits,
    metrics: Option<Arc<Metrics>>,
    stop: watch::Receiver<bool>,
}

enum Event {
    Ended(Result<(), hyper::Error>),
    Tick,
    Stop,
}

impl<S> Connection<S>
where
    S: tower_service::Service<Request<RequestBody>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    async fn run(mut self, stream: TcpStream, peer: SocketAddr, permit: Permit) {
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
                            tracing::debug!(%peer, reason = reason.label(), "closing connection");
                            self.count(reason);
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
            self.count(Closed::HeadTooLarge);
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

    fn count(&self, reason: Closed) {
        if let Some(m) = &self.metrics {
            m.http_connections_closed_total
                .with_label_values(&[reason.label()])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_its_empty_line() {
        let mut scan = HeadScan::default();
        assert_eq!(scan.feed(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n", 100), Ok(()));
        assert!(!scan.complete);
        assert_eq!(scan.feed(b"\r\nbody bytes that do not count", 100), Ok(()));
        assert!(scan.complete);
        let mut bare = HeadScan::default();
        assert_eq!(bare.feed(b"GET / HTTP/1.1\nHost: a\n\n", 100), Ok(()));
        assert!(bare.complete);
    }

    #[test]
    fn long_request_lines_and_heads_are_told_apart() {
        let mut uri = HeadScan::default();
        assert_eq!(uri.feed(&[b'a'; 101], 100), Err(Oversized::Uri));
        let mut head = HeadScan::default();
        let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
        bytes.extend_from_slice(&[b'h'; 100]);
        assert_eq!(head.feed(&bytes, 100), Err(Oversized::Head));
        let mut many = HeadScan::default();
        let lines = "x: y\r\n".repeat(MAX_HEADERS + 1);
        assert_eq!(
            many.feed(format!("GET / HTTP/1.1\r\n{lines}").as_bytes(), 1 << 20),
            Err(Oversized::Head)
        );
        let mut enough = HeadScan::default();
        let lines = "x: y\r\n".repeat(MAX_HEADERS);
        assert_eq!(
            enough.feed(format!("GET / HTTP/1.1\r\n{lines}\r\n").as_bytes(), 1 << 20),
            Ok(())
        );
        assert!(enough.complete);
    }

    #[test]
    fn clients_are_counted_by_address_and_ipv6_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            client_key(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn reasons_are_the_exported_label_set() {
        let labels: Vec<_> = Closed::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(labels, crate::telemetry::metrics::CONNECTION_CLOSE_REASONS);
    }

    #[test]
    fn caps_refuse_and_places_come_back() {
        let limits = Limits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections: 3,
            max_per_client: 2,
            max_head_bytes: 1024,
        };
        let tracker = Arc::new(Tracker::default());
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let c: IpAddr = "192.0.2.3".parse().expect("ip");
        let a1 = tracker.admit(a, &limits).expect("first");
        let _a2 = tracker.admit(a, &limits).expect("second");
        assert_eq!(tracker.admit(a, &limits).err(), Some(Closed::ClientLimit));
        let _b1 = tracker.admit(b, &limits).expect("other client");
        assert_eq!(tracker.admit(c, &limits).err(), Some(Closed::TotalLimit));
        drop(a1);
        let _c1 = tracker.admit(c, &limits).expect("a place came back");
        assert_eq!(tracker.lock().per_client.get(&a), Some(&1));
    }
}
