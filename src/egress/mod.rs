//! Egress defence: which addresses a capture may reach. A screenshot service fetches URLs for
//! strangers; without this it would be a way into the operator's own network.
//!
//! - [`policy`]: the address classification (loopback, private, link-local, CGNAT, multicast,
//!   metadata, IPv4 inside IPv6, …) and the operator's allow list.
//!
//! Today the main URL of every capture is checked before a credit is held: IP literals in any
//! form the URL parser accepts, and every address a host name resolves to. Subresources,
//! redirects and DNS rebinding are not yet covered (the egress proxy of issue 4).

pub mod policy;

pub use policy::{EgressPolicy, UrlBlocked};
