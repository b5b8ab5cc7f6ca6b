//! Egress defence: which addresses a capture may reach. A screenshot service fetches URLs for
//! strangers; without this it would be a way into the operator's own network.
//!
//! - [`policy`]: the address classification (loopback, private, link-local, CGNAT, multicast,
//!   metadata, IPv4 inside IPv6, …), the operator's allow list, and resolve-then-check.
//! - [`proxy`]: the HTTP proxy on loopback that every browser sends all of its traffic through;
//!   it resolves each destination once, checks it, and connects to the address it checked.
//! - [`netns`]: the browsers' own network namespace, whose only way out is the proxy — so no
//!   protocol (WebRTC's UDP, direct TCP, anything else) goes around it.
//!
//! Two gates: the API checks a capture's main URL before a credit is held (400
//! `url_not_allowed`; a name that does not resolve at all is 502 `navigation_failed`); the
//! proxy then covers everything the page does after that — redirects, subresources, iframes,
//! `fetch`, WebSockets — and DNS rebinding between the two; the namespace makes the proxy the
//! browsers' only route, whatever Chromium's flags do.

pub mod netns;
pub mod policy;
pub(crate) mod proxy;

pub use policy::{EgressPolicy, UrlBlocked};
pub use proxy::EgressProxy;
