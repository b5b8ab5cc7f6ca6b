//! `[server]` and `[log]`: the HTTP listeners, their connection limits and shutdown; logging.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address of the public API.
    pub listen: SocketAddr,
    /// Address of the Prometheus exporter (`/metrics`, `/healthz`, `/readyz`).
    pub metrics_listen: SocketAddr,
    /// How long a graceful shutdown waits for in-flight captures, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: u64,
    /// A request head (request line and headers) must arrive whole within this, in
    /// milliseconds: counted from a connection's opening for its first request, from the
    /// head's first byte for later ones. A request in progress is never cut by it.
    pub header_timeout_ms: u64,
    /// A keep-alive connection with no request in progress and no byte moving is closed after
    /// this, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Connections the API listener keeps open at most; beyond, 503 `server_busy`.
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /64) may have open; beyond, 429
    /// `too_many_connections`. Behind a reverse proxy every client shares its address: set it
    /// to `max_connections` there.
    pub max_connections_per_client: usize,
    /// Largest request head (request line and headers), in bytes; beyond, 414 `uri_too_long`
    /// or 431 `headers_too_large`.
    pub max_request_head_bytes: usize,
    /// This host's name in the fleet (`shotfarm_build_info{host}`); empty = the machine's host
    /// name.
    pub instance_name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            shutdown_grace_ms: 30_000,
            max_body_bytes: 1024 * 1024,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 4096,
            max_connections_per_client: 64,
            max_request_head_bytes: 32 * 1024,
            instance_name: String::new(),
        }
    }
}

impl ServerConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info,chromiumoxide=off".to_string(),
        }
    }
}
