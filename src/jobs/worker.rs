//! The async job workers. Each daemon runs `jobs.workers` of them; each takes one stream entry
//! at a time (an abandoned one first, else a new one, `store::JobStore::next`), keeps its claim
//! fresh while it works (`XCLAIM … JUSTID` every third of `claim_idle_ms`), runs the job,
//! delivers its webhook and only then acknowledges the entry. An entry left unacknowledged (its
//! host died, Redis went away, the job had to wait for a hold) is taken over by any worker once
//! its claim is `claim_idle_ms` old.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tracing::Instrument as _;

use super::store::{Entry, JobRecord, JobStatus, JobStore};
use super::{webhook_id, ParseOptions};
use crate::accounts::secrets::sha256_hex;
use crate::accounts::Accounts;
use crate::config::Config;
use crate::egress::{EgressPolicy, UrlBlocked};
use crate::farm::{CaptureError, CaptureOutput, Farm, ANSWER_SLACK};
use crate::ledger::{
    Hold, HoldRequest, Idempotency, Ledger, Outcome, Reservation, Settled, StoredResult,
};
use crate::live::Live;
use crate::notifications::{Delivery, LowBalance, Notifier, Signed};
use crate::telemetry::events::{InternalEvent, JobEvent, JobOutcome};
use crate::telemetry::Metrics;

/// What the workers share.
#[derive(Clone)]
pub struct Workers {
    pub store: JobStore,
    pub accounts: Accounts,
    pub ledger: Ledger,
    pub farm: Farm,
    pub metrics: Arc<Metrics>,
    pub egress: Arc<EgressPolicy>,
    pub notifier: Notifier,
    /// Delivers the low-balance notification a job's charge queued (`commit.lua`).
    pub low_balance: LowBalance,
    pub config: Live<Config>,
    pub parse: ParseOptions,
}

/// How a run of a job ended, for the worker.
enum Run {
    /// The job has its outcome (now or earlier): deliver it.
    Finished,
    /// Not now (its earlier hold is still open, the ledger is away): leave the entry pending,
    /// to be taken over once its claim is stale.
    Later(String),
    /// The record is gone (expired): nothing to deliver.
    Gone,
}

/// A failed job's code and message: the same code a synchronous capture would answer.
struct Failure {
    code: &'static str,
    message: String,
}

impl Workers {
    /// Starts `jobs.workers` workers and the queue's metrics sampler; abort the handles to stop
    /// them (entries in progress stay pending and are taken over elsewhere or after a restart).
    pub fn spawn(self) -> Vec<tokio::task::JoinHandle<()>> {
        let count = self.config.get().jobs.workers;
        let host = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let mut handles = Vec::new();
        crate::telemetry::events::JobEvent::register(&self.metrics);
        let sampler = self.clone();
        handles.push(tokio::spawn(async move { sampler.sample_depth().await }));
        for n in 0..count {
            let worker = self.clone();
            let consumer = format!("{host}-{n}");
            handles.push(tokio::spawn(async move { worker.run(consumer).await }));
        }
        handles
    }

    async fn sample_depth(self) {
        let mut group_ready = false;
        loop {
            if !group_ready {
                group_ready = self.store.ensure_group().await.is_ok();
            }
            if let Ok(depth) = self.store.depth().await {
                self.metrics.jobs_waiting.set(depth.waiting as i64);
                self.metrics.jobs_in_progress.set(depth.pending as i64);
                self.metrics
                    .jobs_oldest_waiting_seconds
                    .set(depth.oldest_waiting_ms as f64 / 1e3);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn run(self, consumer: String) {
        let mut group_ready = false;
        let mut backoff = Duration::from_millis(200);
        let mut cursor = "0-0".to_string();
        loop {
            if !group_ready {
                match self.store.ensure_group().await {
                    Ok(()) => group_ready = true,
                    Err(e) => {
                        tracing::debug!("jobs stream not ready: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            let claim_idle = Duration::from_millis(self.config.get().jobs.claim_idle_ms);
            match self.store.next(&consumer, claim_idle, &mut cursor).await {
                Ok(Some(entry)) => {
                    backoff = Duration::from_millis(200);
                    let span =
                        tracing::info_span!("job", job = %entry.job, account = %entry.account);
                    self.process(&consumer, entry).instrument(span).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("cannot read the jobs stream: {e}");
                    // NOGROUP after a Redis restart: make the group again.
                    group_ready = false;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// One entry: run the job unless it has its outcome, deliver it, acknowledge.
    async fn process(&self, consumer: &str, entry: Entry) {
        if entry.reclaimed {
            JobEvent {
                outcome: JobOutcome::Reclaimed,
                job: &entry.job,
                why: "its worker stopped renewing its claim",
            }
            .emit(&self.metrics);
        }
        // The claim stays fresh while this worker works on the entry.
        let heartbeat = {
            let (store, consumer, id) = (
                self.store.clone(),
                consumer.to_string(),
                entry.stream_id.clone(),
            );
            let every = self.config.get().jobs.heartbeat();
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = store.heartbeat(&consumer, &id).await {
                        tracing::warn!("cannot renew the claim on a job: {e}");
                    }
                }
            }))
        };
        let record = match self.store.get(&entry.account, &entry.job).await {
            Ok(Some(record)) => record,
            Ok(None) => return self.close(&entry).await,
            Err(e) => {
                tracing::warn!("cannot read the job ({e}); left for later");
                return;
            }
        };
        if !record.finished {
            match self.run_job(consumer, &entry, &record).await {
                Run::Finished => {}
                Run::Gone => return self.close(&entry).await,
                Run::Later(why) => {
                    tracing::info!("job left for later: {why}");
                    return;
                }
            }
        }
        match self.store.get(&entry.account, &entry.job).await {
            Ok(Some(record)) => {
                if matches!(record.delivery.as_deref(), Some("pending") | None) {
                    self.deliver(&record).await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("cannot read the finished job ({e}); left for later");
                return;
            }
        }
        drop(heartbeat);
        self.close(&entry).await;
    }

    async fn close(&self, entry: &Entry) {
        if let Err(e) = self.store.close(entry).await {
            tracing::warn!("cannot acknowledge a job ({e}); it will be taken up again");
        }
    }

    /// Runs the capture under a hold keyed by the job and writes its outcome once.
    async fn run_job(&self, consumer: &str, entry: &Entry, record: &JobRecord) -> Run {
        let config = self.config.get();
        let started = crate::timestamps::now_ms().to_string();
        match self
            .store
            .update_open(
                &entry.account,
                &entry.job,
                &[
                    ("status", b"running"),
                    ("started_ms", started.as_bytes()),
                    ("worker", consumer.as_bytes()),
                ],
            )
            .await
        {
            Ok(-1) => return Run::Gone,
            Ok(0) => return Run::Finished,
            Ok(_) => {}
            Err(e) => return Run::Later(format!("ledger: {e}")),
        }
        let options = match serde_json::from_str::<Value>(&record.options) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let (spec, timeout) = match (self.parse)(options, &config.capture) {
            Ok(parsed) => parsed,
            Err(message) => return self.fail(entry, "invalid_parameter", message).await,
        };
        if spec.html.is_none() {
            if let Err(blocked) = self.egress.check_url(&spec.url).await {
                let (code, message) = match &blocked {
                    UrlBlocked::Unresolvable { host } => (
                        "navigation_failed",
                        format!("DNS lookup failed: {host} does not resolve"),
                    ),
                    other => ("url_not_allowed", other.to_string()),
                };
                return self.fail(entry, code, message).await;
            }
        }
        let idempotency = Idempotency {
            key_hash: sha256_hex(format!("job:{}", entry.job).as_bytes()),
            fingerprint: sha256_hex(format!("job:{}", entry.job).as_bytes()),
        };
        let request = HoldRequest {
            account: entry.account.clone(),
            ttl: timeout + ANSWER_SLACK + Duration::from_millis(config.ledger.hold_grace_ms),
            idempotency: Some(idempotency.clone()),
            description: format!("Async {}", lowercase_first(&spec.describe())),
            max_held: config.ledger.max_in_flight_per_account,
        };
        let hold = match Hold::reserve(&self.ledger, request).await {
            Ok(Reservation::Held(hold)) => hold,
            // An earlier run committed: the image is in the record, charged once already.
            Ok(Reservation::Refused(
                Outcome::IdempotencyReplay { .. } | Outcome::IdempotencyResultUnavailable { .. },
            )) => return self.succeed(entry).await,
            Ok(Reservation::Refused(Outcome::IdempotencyInFlight { .. })) => {
                // An earlier run's hold is open. Its worker went silent (this is a
                // takeover) or is slow: either way it may still commit, so its hold is
                // left alone — releasing it would let that run deliver an image free. The
                // job is taken up again after claim_idle_ms: by then that run committed
                // (a replay below) or its hold expired (the sweeper gives the credit back).
                return Run::Later("an earlier run's hold is still open".into());
            }
            Ok(Reservation::Refused(Outcome::TooManyInFlight { .. })) => {
                // The account's other captures fill its cap: this worker serves others
                // meanwhile, and the job is taken up again once its claim is stale.
                return Run::Later("the account's captures in flight are at their cap".into());
            }
            Ok(Reservation::Refused(Outcome::Insufficient { available })) => {
                return self
                    .fail(
                        entry,
                        "insufficient_credits",
                        format!("the account has {available} credits; the job was not run"),
                    )
                    .await
            }
            Ok(Reservation::Refused(Outcome::NoAccount)) => {
                return self
                    .fail(entry, "unauthorized", "no such account".into())
                    .await
            }
            Ok(Reservation::Refused(other)) => {
                return Run::Later(format!("unexpected reserve outcome {}", other.name()))
            }
            Err(e) => return Run::Later(e.to_string()),
        };
        let hold_id = hold.id().to_string();
        if let Err(e) = self
            .store
            .update_open(&entry.account, &entry.job, &[("hold", hold_id.as_bytes())])
            .await
        {
            tracing::warn!("cannot note the job's hold ({e})");
        }
        // An earlier run stored its image and died before its commit: charge that image.
        if record.image_bytes == 0 {
            let deadline = Instant::now() + timeout;
            let output = self
                .farm
                .capture(&self.metrics, &entry.job, spec, deadline)
                .await;
            match output {
                Ok(output) if output.image.len() as u64 > config.jobs.max_image_bytes => {
                    hold.release().await;
                    let (size, cap) = (output.image.len(), config.jobs.max_image_bytes);
                    return self
                        .fail(
                            entry,
                            "output_too_large",
                            format!("the image is {size} bytes; async jobs keep at most {cap} (jobs.max_image_bytes); not charged"),
                        )
                        .await;
                }
                Ok(output) => {
                    if !self.keep_image(entry, &output).await {
                        hold.release().await;
                        return Run::Finished;
                    }
                }
                Err(error) => {
                    hold.release().await;
                    return self.fail_capture(entry, &error).await;
                }
            }
        }
        let done = StoredResult {
            meta: json!({ "job": entry.job }).to_string(),
            body: Vec::new(),
        };
        let result_ttl = Duration::from_secs(config.jobs.result_ttl_secs);
        match hold.commit(Some(done), result_ttl).await {
            Settled::Charged { crossed: true, .. } => self.low_balance.nudge(&entry.account),
            Settled::Charged { .. } | Settled::Retrying { .. } => {}
            Settled::Voided { .. } => {
                tracing::warn!("the job's hold expired before its commit; the image is free")
            }
        }
        self.succeed(entry).await
    }

    /// Writes the image (before the commit: a later run finds it). False when the job was
    /// finished by another run meanwhile or is gone.
    async fn keep_image(&self, entry: &Entry, output: &CaptureOutput) -> bool {
        let (width, height) = (output.width.to_string(), output.height.to_string());
        let written = self
            .store
            .update_open(
                &entry.account,
                &entry.job,
                &[
                    ("image", &output.image),
                    ("format", output.format.as_str().as_bytes()),
                    ("width", width.as_bytes()),
                    ("height", height.as_bytes()),
                ],
            )
            .await;
        matches!(written, Ok(1))
    }

    async fn succeed(&self, entry: &Entry) -> Run {
        self.finish(entry, JobStatus::Succeeded, None).await
    }

    async fn fail_capture(&self, entry: &Entry, error: &CaptureError) -> Run {
        let code = error.code();
        self.fail(entry, code, error.to_string()).await
    }

    async fn fail(&self, entry: &Entry, code: &'static str, message: String) -> Run {
        self.finish(entry, JobStatus::Failed, Some(Failure { code, message }))
            .await
    }

    /// Writes the outcome, once: a second writer (a run that was taken over yet went on) is
    /// refused by the record's `final`.
    async fn finish(&self, entry: &Entry, status: JobStatus, failure: Option<Failure>) -> Run {
        let finished = crate::timestamps::now_ms().to_string();
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("status", status.as_str().as_bytes()),
            ("finished_ms", finished.as_bytes()),
            ("delivery", b"pending"),
        ];
        if let Some(f) = &failure {
            fields.push(("error_code", f.code.as_bytes()));
            fields.push(("error_message", f.message.as_bytes()));
        }
        // `final` last: the script sets every field or none.
        fields.push(("final", b"1"));
        match self
            .store
            .update_open(&entry.account, &entry.job, &fields)
            .await
        {
            Ok(-1) => Run::Gone,
            Ok(0) => Run::Finished,
            Ok(_) => {
                let ttl = Duration::from_secs(self.config.get().jobs.result_ttl_secs);
                let _ = self.store.set(&entry.account, &entry.job, &[], ttl).await;
                let (outcome, why) = match &failure {
                    None => (JobOutcome::Succeeded, String::new()),
                    Some(f) => (JobOutcome::Failed, format!("{}: {}", f.code, f.message)),
                };
                JobEvent {
                    outcome,
                    job: &entry.job,
                    why: &why,
                }
                .emit(&self.metrics);
                Run::Finished
            }
            Err(e) => Run::Later(format!("ledger: {e}")),
        }
    }

    /// POSTs the outcome to the job's webhook URL (signed with the account's secret, retried
    /// with back-off, through the egress proxy) and records how it ended.
    async fn deliver(&self, record: &JobRecord) {
        let config = self.config.get();
        let ttl = Duration::from_secs(config.jobs.result_ttl_secs);
        let secret = match self.accounts.webhook_secret(&record.account).await {
            Ok(secret) => secret,
            Err(e) => {
                tracing::warn!("cannot read the account's webhook secret ({e})");
                return;
            }
        };
        let body = webhook_body(record, &config.auth.public_url);
        let id = webhook_id(&record.id);
        let message = Signed {
            url: &record.webhook_url,
            secret: &secret,
            id: &id,
            body: &body,
        };
        let delivery = self
            .notifier
            .send(&message, |attempt, why, wait| {
                tracing::info!(attempt, ?wait, "job webhook failed ({why}); retrying")
            })
            .await;
        let (state, outcome, why) = match delivery {
            Delivery::Delivered { .. } => ("delivered", JobOutcome::Delivered, String::new()),
            Delivery::Refused { why, .. } | Delivery::GaveUp { why, .. } => {
                ("gave_up", JobOutcome::GaveUp, why)
            }
        };
        JobEvent {
            outcome,
            job: &record.id,
            why: &why,
        }
        .emit(&self.metrics);
        if let Err(e) = self
            .store
            .set(
                &record.account,
                &record.id,
                &[("delivery", state.to_string())],
                ttl,
            )
            .await
        {
            tracing::warn!("cannot record the job's delivery ({e})");
        }
    }
}

/// `{"type":"screenshot.succeeded"|"screenshot.failed","timestamp","data":{…}}`.
pub fn webhook_body(record: &JobRecord, public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    let succeeded = record.status == JobStatus::Succeeded;
    let mut data = json!({
        "id": record.id,
        "status": record.status.as_str(),
        "status_url": format!("{base}/api/v1/screenshots/{}", record.id),
    });
    if succeeded {
        data["image_url"] = json!(format!("{base}/api/v1/screenshots/{}/image", record.id));
        data["format"] = json!(record.format);
        data["width"] = json!(record.width);
        data["height"] = json!(record.height);
    }
    if let Some((code, message)) = &record.error {
        data["error"] = json!({ "code": code, "message": message });
    }
    json!({
        "type": if succeeded { "screenshot.succeeded" } else { "screenshot.failed" },
        "timestamp": crate::timestamps::iso_time(crate::timestamps::now_ms()),
        "data": data,
    })
    .to_string()
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Aborts a task when dropped (the claim's heartbeat ends with its entry's processing).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: JobStatus) -> JobRecord {
        JobRecord {
            id: "job_0123456789abcdef0123456789abcdef".into(),
            account: "acct_1".into(),
            status,
            created_ms: 1_700_000_000_000,
            finished_ms: Some(1_700_000_001_000),
            options: "{}".into(),
            webhook_url: "https://hooks.example.com/x".into(),
            error: (status == JobStatus::Failed)
                .then(|| ("navigation_failed".to_string(), "DNS".to_string())),
            format: Some("png".into()),
            width: Some(1280),
            height: Some(800),
            image_bytes: 10,
            delivery: Some("pending".into()),
            finished: true,
        }
    }

    #[test]
    fn webhook_bodies_say_what_happened_and_where_the_image_is() {
        let ok: Value = serde_json::from_str(&webhook_body(
            &record(JobStatus::Succeeded),
            "https://shots.example.com/",
        ))
        .expect("json");
        assert_eq!(ok["type"], "screenshot.succeeded");
        assert_eq!(ok["data"]["status"], "succeeded");
        assert_eq!(
            ok["data"]["image_url"],
            "https://shots.example.com/api/v1/screenshots/job_0123456789abcdef0123456789abcdef/image"
        );
        assert_eq!(ok["data"]["width"], 1280);
        assert!(ok["data"].get("error").is_none());
        let failed: Value = serde_json::from_str(&webhook_body(
            &record(JobStatus::Failed),
            "https://shots.example.com",
        ))
        .expect("json");
        assert_eq!(failed["type"], "screenshot.failed");
        assert_eq!(failed["data"]["error"]["code"], "navigation_failed");
        assert!(failed["data"].get("image_url").is_none());
    }

    #[test]
    fn job_ids_have_one_shape() {
        let id = super::super::new_job_id();
        assert!(super::super::is_job_id(&id), "{id}");
        for bad in [
            "",
            "job_",
            "job_xyz",
            "../../etc",
            "job_0123456789abcdef0123456789abcdeg",
        ] {
            assert!(!super::super::is_job_id(bad), "{bad}");
        }
        assert_eq!(super::super::webhook_id(&id), format!("msg_{id}"));
    }
}
