//! The egress proxy: every request a captured page makes — the main document, each redirect,
//! subresources, iframes, `fetch`, WebSockets — reaches the network through this HTTP proxy
//! on loopback, because every browser is started with `--proxy-server` pointing here and with
//! loopback removed from the bypass list. For each connection the proxy resolves the host once,
//! checks every address against the [`EgressPolicy`], and connects to the addresses it checked:
//! a DNS answer that changes between a check and a connect (rebinding) cannot steer it inward.
//!
//! - `CONNECT host:port` (HTTPS, `wss:` and `ws:` — Chromium tunnels WebSockets): refused with
//!   403, which Chromium reports as `net::ERR_TUNNEL_CONNECTION_FAILED`; allowed ones become a
//!   byte tunnel to the checked address.
//! - `GET http://host/…` (plain HTTP, absolute form): forwarded through a pooled client whose
//!   connector is the same resolve-check-connect step. A refusal closes the connection without
//!   an answer, so the page sees a network error (`net::ERR_EMPTY_RESPONSE`) — never an error
//!   page that could be captured and charged for.

use crate::telemetry::events::{EgressKind, EgressOutcome, EgressRequest, InternalEvent};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use url::Host;

use super::netns::Namespace;
use super::policy::{EgressPolicy, UrlBlocked};
use crate::telemetry::Metrics;

/// Longest a connection to a page's server may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest Chromium may take to send a request head on a connection to the proxy.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Why the proxy did not connect a page to where it asked.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(transparent)]
    Refused(#[from] UrlBlocked),
    #[error("{0} is the egress proxy itself")]
    Loop(SocketAddr),
    #[error("`{0}` is not a host name or address")]
    BadHost(String),
    #[error("could not connect to {host}: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to {0}")]
    Timeout(String),
}

impl DialError {
    /// Refused by policy (as opposed to a network failure).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            DialError::Refused(_) | DialError::Loop(_) | DialError::BadHost(_)
        )
    }
}

/// Resolve once, check every address, connect to a checked address.
#[derive(Clone)]
pub struct Dialer {
    policy: Arc<EgressPolicy>,
    /// The proxy's own address, never a destination.
    own: SocketAddr,
}

impl Dialer {
    pub fn new(policy: Arc<EgressPolicy>, own: SocketAddr) -> Dialer {
        Dialer { policy, own }
    }

    /// Connects to `host:port` (a name, an IPv4 address in any form the URL standard accepts, or
    /// a bracketed IPv6 address) if the policy allows every address it stands for.
    pub async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        let parsed = Host::parse(host).map_err(|_| DialError::BadHost(host.to_string()))?;
        let addresses = match &parsed {
            Host::Domain(name) => self.policy.resolve(Host::Domain(name), port).await?,
            Host::Ipv4(v4) => self.policy.resolve(Host::Ipv4(*v4), port).await?,
            Host::Ipv6(v6) => self.policy.resolve(Host::Ipv6(*v6), port).await?,
        };
        if let Some(own) = addresses.iter().find(|a| self.is_own(**a)) {
            return Err(DialError::Loop(*own));
        }
        let connect = async {
            let mut last = None;
            for address in &addresses {
                match TcpStream::connect(address).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(DialError::Connect {
                host: host.to_string(),
                source: last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| Err(DialError::Timeout(host.to_string())))
    }

    fn is_own(&self, address: SocketAddr) -> bool {
        address.port() == self.own.port()
            && (address.ip() == self.own.ip()
                || (address.ip().is_unspecified() || self.own.ip().is_unspecified()))
    }
}

/// The connector of the plain-HTTP client: every new upstream connection is dialled (and so
/// checked); pooled connections stay on the address that was checked when they opened.
impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().unwrap_or(80);
            dialer.dial(host, port).await.map(TokioIo::new)
        })
    }
}

/// A request the proxy will not carry.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("not a proxy request: {0}")]
    NotProxyRequest(String),
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("upstream: {0}")]
    Upstream(String),
}

struct Proxy {
    dialer: Dialer,
    client: Client<Dialer, Incoming>,
    metrics: Arc<Metrics>,
}

/// The running proxy; it stops accepting when dropped.
pub struct EgressProxy {
    /// On the daemon's own loopback (the daemon's notifications go through it).
    addr: SocketAddr,
    /// Where browsers reach it: inside their network namespace when they have one.
    browser_addr: SocketAddr,
    accept: Vec<tokio::task::JoinHandle<()>>,
}

impl EgressProxy {
    /// Binds a loopback port (and one inside the browsers' network namespace, when given) and
    /// serves until dropped.
    pub async fn start(
        policy: Arc<EgressPolicy>,
        metrics: Arc<Metrics>,
        namespace: Option<&Namespace>,
    ) -> std::io::Result<EgressProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let dialer = Dialer::new(policy, addr);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(dialer.clone());
        let proxy = Arc::new(Proxy {
            dialer,
            client,
            metrics,
        });
        let mut accept = vec![tokio::spawn(accept_loop(listener, proxy.clone()))];
        let browser_addr = match namespace {
            Some(namespace) => {
                let inside = namespace.listen().await?;
                let inside_addr = inside.local_addr()?;
                accept.push(tokio::spawn(accept_loop(inside, proxy)));
                tracing::info!(target: "egress", %inside_addr, "egress proxy listening inside the browsers' network");
                inside_addr
            }
            None => addr,
        };
        tracing::info!(target: "egress", %addr, "egress proxy listening");
        Ok(EgressProxy {
            addr,
            browser_addr,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Chromium flags that send all of a browser's traffic through this proxy: loopback is
    /// proxied too (`<-loopback>` removes Chromium's implicit bypass), host names are never
    /// resolved by Chromium itself, and WebRTC is asked not to send UDP around the proxy (a wish:
    /// Chromium 156 still sends STUN to a page's servers; the browsers' namespace is what holds).
    pub fn chromium_flags(&self) -> Vec<String> {
        vec![
            format!("--proxy-server=http://{}", self.browser_addr),
            "--proxy-bypass-list=<-loopback>".to_string(),
            format!(
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {}",
                self.browser_addr.ip()
            ),
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp".to_string(),
        ]
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        for task in &self.accept {
            task.abort();
        }
    }
}

/// Serves every connection `listener` accepts.
async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(target: "egress", "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { proxy.handle(req).await }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .preserve_header_case(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(target: "egress", "proxy connection ended: {e}");
            }
        });
    }
}

impl Proxy {
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, ProxyError> {
        let kind = if req.method() == Method::CONNECT {
            EgressKind::Tunnel
        } else {
            EgressKind::Http
        };
        let result = match kind {
            EgressKind::Tunnel => self.tunnel(req).await,
            EgressKind::Http => self.forward(req).await,
        };
        let outcome = match &result {
            Ok(response) if kind == EgressKind::Tunnel && !response.status().is_success() => {
                EgressOutcome::Refused
            }
            Ok(_) => EgressOutcome::Forwarded,
            Err(ProxyError::Dial(e)) if e.is_refusal() => EgressOutcome::Refused,
            Err(ProxyError::NotProxyRequest(_)) => EgressOutcome::Refused,
            Err(_) => EgressOutcome::Failed,
        };
        EgressRequest {
            kind,
            outcome,
            error: result.as_ref().err().map(|e| e as &dyn std::fmt::Display),
        }
        .emit(&self.metrics);
        result
    }

    /// `CONNECT host:port`: dial, answer 200, then splice bytes both ways.
    async fn tunnel(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, ProxyError> {
        let Some(authority) = req.uri().authority().cloned() else {
            return Ok(status(StatusCode::BAD_REQUEST));
        };
        let port = authority.port_u16().unwrap_or(443);
        let mut upstream = match self.dialer.dial(authority.host(), port).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(target: "egress", %authority, "tunnel not opened: {e}");
                return Ok(status(if e.is_refusal() {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::BAD_GATEWAY
                }));
            }
        };
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let mut browser = TokioIo::new(upgraded);
                    let _ = tokio::io::copy_bidirectional(&mut browser, &mut upstream).await;
                }
                Err(e) => tracing::debug!(target: "egress", "tunnel upgrade failed: {e}"),
            }
        });
        Ok(status(StatusCode::OK))
    }

    /// `METHOD http://host/path`: forward to the origin, minus hop-by-hop headers.
    async fn forward(&self, mut req: Request<Incoming>) -> Result<Response<ProxyBody>, ProxyError> {
        if req.uri().scheme_str() != Some("http") || req.uri().host().is_none() {
            return Err(ProxyError::NotProxyRequest(req.uri().to_string()));
        }
        strip_hop_by_hop(req.headers_mut());
        match self.client.request(req).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(parts, body.boxed()))
            }
            Err(e) => {
                // The connector's own error sits somewhere in the chain.
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(err) = source {
                    if let Some(dial) = err.downcast_ref::<DialError>() {
                        return Err(ProxyError::Dial(clone_dial(dial)));
                    }
                    source = err.source();
                }
                Err(ProxyError::Upstream(e.to_string()))
            }
        }
    }
}

/// A copy of a dial error found behind a reference (io errors keep only their kind and text).
fn clone_dial(e: &DialError) -> DialError {
    match e {
        DialError::Refused(b) => DialError::Refused(b.clone()),
        DialError::Loop(a) => DialError::Loop(*a),
        DialError::BadHost(h) => DialError::BadHost(h.clone()),
        DialError::Connect { host, source } => DialError::Connect {
            host: host.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        DialError::Timeout(h) => DialError::Timeout(h.clone()),
    }
}

fn status(code: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = code;
    response
}

/// Removes the headers that describe one hop (RFC 9110 §7.6.1), including those the
/// `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
    headers.remove("keep-alive");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on 127.0.0.3 that answers every request with the request head it received.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.3:0")
            .await
            .expect("bind 127.0.0.3");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let head = read_head(&mut stream).await;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                        head.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        addr
    }

    async fn read_head(stream: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => buf.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    async fn proxy(allow: &[&str]) -> (EgressProxy, Arc<Metrics>) {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        let policy = Arc::new(EgressPolicy::new(&allow).expect("policy"));
        let metrics = Arc::new(Metrics::new());
        let proxy = EgressProxy::start(policy, metrics.clone(), None)
            .await
            .expect("proxy starts");
        (proxy, metrics)
    }

    /// Sends `request` to the proxy and reads one answer: its head and a `Content-Length`
    /// body; empty when the proxy closes without answering.
    async fn exchange(proxy: &EgressProxy, request: &str) -> String {
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let head = read_head(&mut stream).await;
        let length = head
            .to_ascii_lowercase()
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>())
            })
            .and_then(Result::ok)
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.expect("body");
        head + &String::from_utf8_lossy(&body)
    }

    fn count(metrics: &Metrics, kind: &str, outcome: &str) -> u64 {
        metrics
            .egress_requests_total
            .with_label_values(&[kind, outcome])
            .get()
    }

    #[tokio::test]
    async fn plain_http_is_forwarded_in_origin_form_without_hop_headers() {
        let upstream = echo_server().await;
        let (proxy, metrics) = proxy(&["127.0.0.3/32"]).await;
        let answer = exchange(
            &proxy,
            &format!(
                "GET http://{upstream}/page?q=1 HTTP/1.1\r\nHost: {upstream}\r\n\
                 Proxy-Connection: keep-alive\r\nConnection: close, x-hop\r\nx-hop: secret\r\n\
                 x-kept: yes\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("get /page?q=1 http/1.1"), "{answer}");
        assert!(lower.contains("x-kept: yes"), "{answer}");
        assert!(!lower.contains("proxy-connection"), "{answer}");
        assert!(!lower.contains("x-hop"), "{answer}");
        assert_eq!(count(&metrics, "http", "forwarded"), 1);
    }

    #[tokio::test]
    async fn refused_plain_http_gets_no_answer_at_all() {
        let upstream = echo_server().await;
        let (proxy, metrics) = proxy(&["127.0.0.3/32"]).await;
        let port = upstream.port();
        for target in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://127.0.0.2:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ] {
            let answer =
                exchange(&proxy, &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
            assert_eq!(answer, "", "{target}");
        }
        // Not a proxy request at all.
        let answer = exchange(&proxy, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(answer, "");
        assert_eq!(count(&metrics, "http", "refused"), 7);
        assert_eq!(count(&metrics, "http", "forwarded"), 0);
    }

    #[tokio::test]
    async fn tunnels_open_to_allowed_addresses_only() {
        let upstream = echo_server().await;
        let (proxy, metrics) = proxy(&["127.0.0.3/32"]).await;
        let port = upstream.port();
        for target in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            format!("0x7f.1:{port}"),
            "[fd00:ec2::254]:80".to_string(),
        ] {
            let answer = exchange(
                &proxy,
                &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 403"), "{target}: {answer}");
        }
        assert_eq!(count(&metrics, "tunnel", "refused"), 5);

        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        stream
            .write_all(
                format!("CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stream
            .write_all(b"GET /through HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out)).await;
        assert!(out.contains("GET /through HTTP/1.1"), "{out}");
        assert_eq!(count(&metrics, "tunnel", "forwarded"), 1);
    }

    #[tokio::test]
    async fn the_proxy_never_connects_to_itself() {
        let (proxy, _) = proxy(&["127.0.0.0/8"]).await;
        let own = proxy.addr();
        let answer = exchange(
            &proxy,
            &format!("CONNECT {own} HTTP/1.1\r\nHost: {own}\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        let answer = exchange(
            &proxy,
            &format!("GET http://{own}/ HTTP/1.1\r\nHost: {own}\r\n\r\n"),
        )
        .await;
        assert_eq!(answer, "");
    }
}
