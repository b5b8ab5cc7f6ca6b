//! The egress policy: an address is allowed when it is public, or inside a range the operator
//! allowed (`egress.allow`, `--allow-egress`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use url::{Host, Url};

/// Why a URL may not be captured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlBlocked {
    #[error("{host} is a {kind} address, which captures may not reach")]
    Address { host: String, kind: &'static str },
    #[error("{host} resolves to {address}, a {kind} address, which captures may not reach")]
    Resolved {
        host: String,
        address: IpAddr,
        kind: &'static str,
    },
    #[error("{host} does not resolve")]
    Unresolvable { host: String },
}

#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allow: Vec<IpNet>,
    /// Names answered without DNS (`egress.hosts`), lower case, no trailing dot.
    hosts: std::collections::HashMap<String, IpAddr>,
}

/// The kind of a non-public IPv4 address, or `None` when it is public.
fn ipv4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "carrier-grade NAT",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local (cloud metadata)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

/// The kind of a non-public IPv6 address (IPv4 carried inside it is judged as IPv4).
fn ipv6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::/96 (NAT64): the IPv4 inside.
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some((hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some((hi, lo)),
        _ => None,
    };
    if let Some((hi, lo)) = embedded {
        let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
        return ipv4_kind(v4).or(Some("IPv4-in-IPv6 (mapped, compatible or NAT64)"));
    }
    Some(match s[0] {
        0x2002 => "6to4",
        0x0064 if s[1] == 0xff9b => "NAT64",
        0xfc00..=0xfdff => "unique local (private; includes fd00:ec2::254 metadata)",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x2001 if s[1] == 0 => "Teredo",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
        0x0000 => "reserved (::/8)",
        _ => return None,
    })
}

/// The kind of a non-public address, or `None` when it is public.
pub fn address_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => ipv4_kind(v4),
        IpAddr::V6(v6) => ipv6_kind(v6),
    }
}

impl EgressPolicy {
    /// A policy allowing public addresses plus `allow` (CIDR ranges or single addresses).
    pub fn new(allow: &[String]) -> Result<EgressPolicy, String> {
        let allow = allow
            .iter()
            .map(|raw| crate::config::parse_allow_entry(raw))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EgressPolicy {
            allow,
            hosts: Default::default(),
        })
    }

    /// The policy with `hosts` answered without DNS (their addresses are still checked).
    pub fn with_hosts<'a>(
        mut self,
        hosts: impl IntoIterator<Item = (&'a String, &'a IpAddr)>,
    ) -> Self {
        self.hosts = hosts
            .into_iter()
            .map(|(name, ip)| (name.trim_end_matches('.').to_ascii_lowercase(), *ip))
            .collect();
        self
    }

    /// `None` when captures may reach `ip`, else the kind of address it is.
    pub fn forbidden(&self, ip: IpAddr) -> Option<&'static str> {
        let kind = address_kind(ip)?;
        let allowed = self.allow.iter().any(|net| {
            net.contains(&ip)
                || match ip {
                    // An allowed IPv4 range also covers its IPv4-mapped form.
                    IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .is_some_and(|v4| net.contains(&IpAddr::V4(v4))),
                    IpAddr::V4(_) => false,
                }
        });
        (!allowed).then_some(kind)
    }

    /// Checks a URL's host: an IP literal directly, a name by every address it resolves to.
    pub async fn check_url(&self, url: &Url) -> Result<(), UrlBlocked> {
        let port = url.port_or_known_default().unwrap_or(80);
        match url.host() {
            Some(host) => self.resolve(host, port).await.map(|_| ()),
            None => Err(UrlBlocked::Unresolvable {
                host: String::new(),
            }),
        }
    }

    /// Resolves `host` once and checks every address: the addresses to connect to, all of
    /// them allowed, or why not. A name with one forbidden address is refused as a whole, so
    /// a resolver answering with a mix cannot steer a connection inward.
    pub async fn resolve(
        &self,
        host: Host<&str>,
        port: u16,
    ) -> Result<Vec<SocketAddr>, UrlBlocked> {
        let (addresses, name) = match host {
            Host::Ipv4(v4) => (vec![IpAddr::V4(v4)], None),
            Host::Ipv6(v6) => (vec![IpAddr::V6(v6)], None),
            Host::Domain(name) => {
                let name = name.trim_end_matches('.');
                let unresolvable = || UrlBlocked::Unresolvable {
                    host: name.to_string(),
                };
                let pinned = self.hosts.get(&name.to_ascii_lowercase()).copied();
                let found: Vec<IpAddr> = match pinned {
                    Some(ip) => vec![ip],
                    None => tokio::net::lookup_host((name, port))
                        .await
                        .map_err(|_| unresolvable())?
                        .map(|a| a.ip())
                        .collect(),
                };
                if found.is_empty() {
                    return Err(unresolvable());
                }
                (found, Some(name))
            }
        };
        for &address in &addresses {
            if let Some(kind) = self.forbidden(address) {
                return Err(match name {
                    Some(name) => UrlBlocked::Resolved {
                        host: name.to_string(),
                        address,
                        kind,
                    },
                    None => UrlBlocked::Address {
                        host: host.to_string(),
                        kind,
                    },
                });
            }
        }
        Ok(addresses
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[tokio::test]
    async fn inward_addresses_in_every_spelling_are_refused() {
        let policy = EgressPolicy::default();
        for raw in [
            "http://127.0.0.1/",
            "http://2130706433/", // decimal
            "http://0177.0.0.1/", // octal
            "http://0x7f.0.0.1/", // hex
            "http://0x7f000001/", // hex, one number
            "http://127.1/",      // short form
            "http://0.0.0.0/",    // unspecified
            "http://[::]/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/", // IPv4-mapped
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",        // IPv4-compatible
            "http://[64:ff9b::a9fe:a9fe]/", // NAT64 of 169.254.169.254
            "http://[2002:7f00:1::]/",      // 6to4 of 127.0.0.1
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/", // AWS IPv6 metadata
            "http://[fe80::1]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://100.64.0.1/", // CGNAT
            "http://224.0.0.1/",  // multicast
            "http://[ff02::1]/",
            "http://255.255.255.255/",
            "http://user:pass@127.0.0.1/",   // userinfo
            "http://example.com@127.0.0.1/", // userinfo that looks like a host
            "https://localhost./",           // trailing dot, resolves to loopback
            "http://localhost:9464/metrics",
        ] {
            let verdict = policy.check_url(&url(raw)).await;
            assert!(
                matches!(
                    verdict,
                    Err(UrlBlocked::Address { .. } | UrlBlocked::Resolved { .. })
                ),
                "{raw}: {verdict:?}"
            );
        }
    }

    #[test]
    fn public_addresses_pass_and_allow_lists_open_ranges() {
        let policy = EgressPolicy::default();
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(policy.forbidden(ip), None, "{ip}");
        }
        let open = EgressPolicy::new(&["127.0.0.0/8".into(), "10.0.0.5".into()]).expect("valid");
        for (ip, forbidden) in [
            ("127.0.0.1", false),
            ("::ffff:127.0.0.1", false),
            ("10.0.0.5", false),
            ("10.0.0.6", true),
            ("169.254.169.254", true),
            ("::1", true),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(open.forbidden(ip).is_some(), forbidden, "{ip}");
        }
        assert!(EgressPolicy::new(&["10.0.0.0/33".into()]).is_err());
        assert!(EgressPolicy::new(&["example.com".into()]).is_err());
    }

    #[tokio::test]
    async fn pinned_hosts_skip_dns_but_not_the_policy() {
        let hosts = [("Ads.Example.".to_string(), "127.0.0.1".parse().expect("ip"))];
        let pinned = |allow: &[String]| {
            EgressPolicy::new(allow)
                .expect("valid")
                .with_hosts(hosts.iter().map(|(n, ip)| (n, ip)))
        };
        // Pinned to loopback, which the default policy refuses: still refused.
        let verdict = pinned(&[]).check_url(&url("http://ads.example/x.js")).await;
        assert!(
            matches!(verdict, Err(UrlBlocked::Resolved { ref host, .. }) if host == "ads.example"),
            "{verdict:?}"
        );
        // With loopback allowed, the pinned name resolves to its address (no DNS asked).
        let open = pinned(&["127.0.0.0/8".into()]);
        let addresses = open
            .resolve(Host::Domain("ADS.example."), 8080)
            .await
            .expect("pinned name resolves");
        assert_eq!(addresses, vec!["127.0.0.1:8080".parse().expect("addr")]);
    }
}
