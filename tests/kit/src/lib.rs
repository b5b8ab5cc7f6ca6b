//! The kit `tests/` and `benches/` share: the real parts a test or a bench starts for itself
//! (a private `redis-server` or Redis Cluster, an S3-compatible moto server, the `shotfarm`
//! binary), free ports, `/proc` scans, and funded accounts made through the operator code path.
//! One home for each, so a fixture is fixed once.

pub mod accounts;
pub mod moto;
pub mod pages;
pub mod ports;
pub mod process;
pub mod procfs;
pub mod redis;
pub mod sentinel;

pub use ports::free_port;
