//! Async captures (`async=true`): a job is accepted at once (202), kept durably in Redis (a
//! stream read by a consumer group), run by any daemon's workers, charged exactly once when its
//! image exists, and its result POSTed, Standard Webhooks-signed, to the job's `webhook_url`.
//!
//! - [`store`]: every Redis command of the jobs (stream, records, caps, the workers' pool).
//! - [`worker`]: the workers: take an entry, run the capture under a hold keyed by the job,
//!   finish the record once, deliver the webhook, acknowledge.
//!
//! Exactly once, across hosts: each run of a job reserves its credit with an `Idempotency`
//! derived from the job id. The image is written to the job's record *before* the commit, and
//! the commit marks the idempotency record done (with a tiny result: the image lives in the
//! job record, not in the idempotency record). A run after a host died therefore finds either
//! the idempotency record done (replay: succeeded, no charge), or the earlier hold in flight
//! (released by the taker once the claim went stale, then held anew; with the image already
//! stored it is committed without capturing again), or nothing (capture). A job's outcome is
//! written once (`final`, by a script that refuses a second writer), and its webhook carries
//! `webhook-id` = `msg_<job id>` on every attempt from every host.

pub(crate) mod store;
pub(crate) mod worker;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::CaptureConfig;
use crate::farm::CaptureSpec;
pub use store::{JobRecord, JobStatus, JobStore, Refused};

/// How the workers read a job's stored options into a capture: the API's own parser, handed
/// in by `app` (nothing below the HTTP layer imports `api`). The capture's spec and timeout,
/// or the reason the options no longer pass (the caps may have changed since submission).
pub type ParseOptions = Arc<
    dyn Fn(Map<String, Value>, &CaptureConfig) -> Result<(CaptureSpec, Duration), String>
        + Send
        + Sync,
>;

/// A new job id: `job_` + a time-ordered UUID.
pub fn new_job_id() -> String {
    format!("job_{}", uuid::Uuid::now_v7().simple())
}

/// Whether `id` has the shape of a job id (so a lookup never builds a key from anything else).
pub fn is_job_id(id: &str) -> bool {
    id.len() == 36 && id.starts_with("job_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The webhook id of a job: the same on every attempt and host.
pub fn webhook_id(job: &str) -> String {
    format!("msg_{job}")
}
