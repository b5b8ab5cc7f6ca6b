//! `[egress]`: which non-public addresses captures may reach, and how an `allow` entry is read.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EgressConfig {
    /// CIDR ranges or addresses captures may reach although they are not public (loopback,
    /// private, link-local, …). Empty: public addresses only.
    pub allow: Vec<String>,
    /// Names answered from here instead of DNS, like `/etc/hosts` (split-horizon names, a
    /// mirror pinned to one address). The address is still checked against the policy: a name
    /// pinned to a private address needs that address in `allow` too.
    pub hosts: BTreeMap<String, IpAddr>,
}

/// One `egress.allow` entry: a CIDR range, or a single IP address (its /32 or /128).
pub fn parse_allow_entry(raw: &str) -> Result<ipnet::IpNet, String> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{raw}` is not a CIDR range or an IP address"))
}
