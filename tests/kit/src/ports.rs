//! Loopback ports.

use std::sync::atomic::{AtomicU32, Ordering};

/// The first port the kernel hands out for outgoing connections (and for `bind(0)`).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A free loopback TCP port for a server a test starts (a daemon, Redis, moto), checked by
/// binding it. Taken below the kernel's ephemeral range: a port released by `bind(0)` can be
/// handed to any outgoing connection (Chromium's, a client's) before the server binds it, which
/// made a spawned daemon fail to start now and then under the full suite's load. Ports below
/// the range are never handed out that way; the counter keeps this process's picks apart.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let top = u32::from(ephemeral_start());
    let bottom = 10_000u32.min(top.saturating_sub(1_000));
    let span = top.saturating_sub(bottom).max(1);
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..span.min(2_000) {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(bottom + (seed.wrapping_add(n.wrapping_mul(7_919)) % span))
        else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
