//! shotfarm: a self-hosted screenshot API.
//!
//! Crate map (start reading at [`app`]):
//! - [`config`]: typed configuration, defaults, validation that reports every problem at once.
//! - [`app`]: wiring — the actix system on a tokio runtime, the farm, both HTTP listeners, and
//!   the shutdown order.
//! - [`api`]: the only module that knows HTTP (warp): routes, request options, error mapping.
//! - [`farm`]: the supervised Chromium fleet; the only module that knows chromiumoxide.
//! - [`ledger`]: the credit ledger in Redis (Lua scripts) and the actor that owns its mutations.
//! - [`accounts`]: accounts, login sessions and API keys.
//! - [`limits`]: per-caller rate limits in Redis.
//! - [`egress`]: which addresses captures may reach.
//! - [`payments`]: Polar checkouts and signed webhooks that credit exactly once.
//! - [`notifications`]: signed low-balance notifications to an account's URL.
//! - [`reload`]: SIGHUP reloads packs, limits and the log level in place.
//! - [`live`]: the running configuration, which requests read and a reload replaces.
//! - [`service_manager`]: what systemd sees: READY, WATCHDOG, STOPPING.
//! - [`storage`]: objects in the operator's S3-compatible bucket (stored captures).
//! - [`ops`]: the operator commands (`shotfarm accounts|keys|credits …`).
//! - [`telemetry`]: logging setup and the Prometheus registry.
//! - [`timestamps`]: RFC 3339 times as the API and the operator commands print them.

pub mod accounts;
pub mod api;
pub mod app;
pub mod cache;
pub mod config;
pub(crate) mod content_filters;
pub mod egress;
pub mod farm;
pub(crate) mod jobs;
pub mod ledger;
pub(crate) mod limits;
pub(crate) mod live;
pub(crate) mod notifications;
pub mod ops;
pub mod payments;
pub(crate) mod reload;
pub mod service_manager;
pub mod storage;
pub mod telemetry;
pub(crate) mod timestamps;
