//! Operator commands (`shotfarm accounts|keys|credits|payments …`): the same stores and ledger actor as
//! the daemon, against the same Redis, from a short-lived process.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use crate::accounts::{Account, Accounts, ApiKeyInfo};
use crate::config::Config;
use crate::ledger::{audit, store, Ledger, Op, Outcome, RedisHandle, TxKind};
use crate::telemetry::Metrics;

/// Runs `f` on a fresh actix system (the ledger actor needs one) and returns its result.
pub fn block_on<Fut, T>(f: impl FnOnce() -> Fut) -> T
where
    Fut: Future<Output = T>,
{
    actix_rt::System::new().block_on(f())
}

/// A connected operator session.
#[derive(Clone)]
pub struct Operator {
    pub accounts: Accounts,
    pub ledger: Ledger,
    pub config: std::sync::Arc<Config>,
}

impl Operator {
    /// Connects to the configured Redis and starts a ledger actor. Call inside [`block_on`].
    pub async fn connect(config: &Config) -> anyhow::Result<Operator> {
        let redis = RedisHandle::new(&config.redis)?.with_replica_acks(
            config.ledger.replica_acks,
            std::time::Duration::from_millis(config.ledger.replica_ack_timeout_ms),
        );
        tokio::time::timeout(
            Duration::from_millis(config.redis.connect_timeout_ms.saturating_mul(3)),
            redis.connect(),
        )
        .await
        .map_err(|_| anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("cannot reach Redis at {}", config.redis.url))?;
        let ledger = Ledger::start(redis, std::sync::Arc::new(Metrics::new()));
        let accounts = Accounts::new(
            ledger.clone(),
            Duration::from_secs(config.auth.session_ttl_secs),
            config.auth.signup_bonus,
        );
        Ok(Operator {
            accounts,
            ledger,
            config: std::sync::Arc::new(config.clone()),
        })
    }

    /// Applies every Polar order of the organization again (`shotfarm payments reconcile`):
    /// grants lost to a missed webhook or a Redis failover come back, nothing applies twice.
    pub async fn reconcile_payments(&self) -> anyhow::Result<String> {
        let payments = crate::payments::Payments::new(&self.config).map_err(anyhow::Error::msg)?;
        let r = payments
            .reconcile(&self.ledger)
            .await
            .context("reconciliation stopped (what it applied so far stays applied)")?;
        Ok(format!(
            "{} orders read: {} credited now, {} already credited, {} refunds taken back now, {} not ours to apply\n",
            r.orders, r.credited, r.already_credited, r.refunded, r.ignored
        ))
    }

    /// Creates an account (with its sign-up bonus) and grants `credits` more when non-zero.
    pub async fn create_account(
        &self,
        email: &str,
        password: Option<&str>,
        credits: i64,
    ) -> anyhow::Result<Account> {
        let account = self.accounts.create(email, password).await?;
        if credits != 0 {
            self.grant(
                &account.id,
                credits,
                "Initial credits granted by the operator",
            )
            .await?;
        }
        Ok(account)
    }

    /// An account by id (`acc_…`) or email.
    pub async fn resolve(&self, id_or_email: &str) -> anyhow::Result<Account> {
        let found = if id_or_email.contains('@') {
            self.accounts.find_by_email(id_or_email).await?
        } else {
            self.accounts.get(id_or_email).await?
        };
        found.ok_or_else(|| anyhow!("no account {id_or_email}"))
    }

    /// An `adjustment` transaction (negative amounts take credits back, never below zero).
    /// Returns the balance after it.
    pub async fn grant(&self, account: &str, amount: i64, reason: &str) -> anyhow::Result<i64> {
        if amount == 0 {
            bail!("--amount must not be 0");
        }
        let reason = reason.trim();
        if reason.is_empty() {
            bail!("--reason must say why");
        }
        // A reference of its own makes this grant safe to retry after a lost reply: the
        // ledger applies it at most once.
        let reference = format!("adjustment:{}", crate::ledger::new_id());
        match self
            .ledger
            .run(Op::Grant {
                account: account.to_string(),
                amount,
                kind: TxKind::Adjustment,
                description: reason.to_string(),
                reference: Some(reference),
            })
            .await?
        {
            Outcome::Granted { available } | Outcome::Duplicate { available } => Ok(available),
            Outcome::Insufficient { available } => {
                bail!("the account has only {available} credits available; nothing changed")
            }
            Outcome::NoAccount => bail!("no account {account}"),
            other => bail!("unexpected ledger answer {other:?}"),
        }
    }

    /// Sets the password an account logs in to the dashboard with.
    pub async fn set_password(&self, account: &str, password: &str) -> anyhow::Result<()> {
        Ok(self.accounts.set_password(account, password).await?)
    }

    pub async fn create_key(
        &self,
        account: &str,
        name: &str,
    ) -> anyhow::Result<(ApiKeyInfo, String)> {
        Ok(self.accounts.create_key(account, name).await?)
    }

    /// A report of an account: counters, open holds, recent transactions, invariant check.
    pub async fn show(&self, account: &Account) -> anyhow::Result<String> {
        let mut conn = self.ledger.redis().get()?;
        let snapshot = store::snapshot(&mut conn, &account.id)
            .await?
            .ok_or_else(|| anyhow!("no ledger for {}", account.id))?;
        let keys = self.accounts.list_keys(&account.id).await?;
        let b = snapshot.balance;
        let mut out = format!(
            "account   {}\nemail     {}\navailable {}\nreserved  {}\nspent     {}\ngranted   {}\n",
            account.id, account.email, b.available, b.reserved, b.spent, b.granted
        );
        out += &format!("api keys  {}\n", keys.len());
        for k in &keys {
            out += &format!("  {} {} ({})\n", k.id, k.prefix, k.name);
        }
        out += &format!("open holds {}\n", snapshot.holds.len());
        for h in &snapshot.holds {
            out += &format!(
                "  {} amount {} expires_ms {}\n",
                h.id, h.amount, h.expires_ms
            );
        }
        out += &format!("transactions {} (newest 10)\n", snapshot.transactions.len());
        for t in snapshot.transactions.iter().take(10) {
            out += &format!(
                "  {} {:>6} {:<12} balance {:>6}  {}\n",
                crate::timestamps::iso_time(t.at_ms),
                t.amount,
                t.kind.as_str(),
                t.balance_after,
                t.description
            );
        }
        let problems = audit::violations(&snapshot);
        if problems.is_empty() {
            out += "invariants ok\n";
        } else {
            out += &format!("INVARIANTS BROKEN:\n  {}\n", problems.join("\n  "));
        }
        Ok(out)
    }
}
