//! Open connections counted in total and per client (IPv6 by its /64): admitting one under the
//! caps, giving its place back when it closes, waiting until none is open.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Closed, Limits};
use crate::telemetry::Metrics;

/// Open connections, in total and per client.
#[derive(Default)]
pub(super) struct Tracker {
    counts: Mutex<Counts>,
    empty: Notify,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it gives its place back.
pub(super) struct Permit {
    tracker: Arc<Tracker>,
    client: IpAddr,
    pub(super) metrics: Option<Arc<Metrics>>,
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

    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Permit, Closed> {
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

    pub(super) async fn wait_empty(&self) {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
