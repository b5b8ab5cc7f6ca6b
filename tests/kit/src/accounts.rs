//! Funded accounts with an API key, made through the operator code path (`shotfarm accounts`).

use shotfarm::config::Config;

/// An account and one API key of it.
#[derive(Debug, Clone)]
pub struct Funded {
    pub account: String,
    pub key: String,
}

/// Creates an account on the Redis (single or cluster) that `config` names, holding exactly
/// `credits` (the sign-up bonus is topped up or taken back by an adjustment), with `password`
/// when given, and one API key labelled `label`.
///
/// `ops::block_on` runs its own actix system, so this runs on a thread of its own: call it from
/// anywhere, inside a tokio runtime or not.
pub fn provision(
    config: &Config,
    email: &str,
    password: Option<&str>,
    credits: i64,
    label: &str,
) -> anyhow::Result<Funded> {
    let config = config.clone();
    let email = email.to_string();
    let password = password.map(str::to_string);
    let label = label.to_string();
    std::thread::spawn(move || {
        shotfarm::ops::block_on(|| async move {
            let op = shotfarm::ops::Operator::connect(&config).await?;
            let account = op.create_account(&email, password.as_deref(), 0).await?;
            let bonus = config.auth.signup_bonus;
            if credits != bonus {
                op.grant(&account.id, credits - bonus, "test funding")
                    .await?;
            }
            let (_, key) = op.create_key(&account.id, &label).await?;
            Ok(Funded {
                account: account.id,
                key,
            })
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the provisioning thread panicked"))?
}

/// A configuration whose only setting is the single Redis at `url`.
pub fn on_redis(url: &str) -> Config {
    let mut config = Config::default();
    config.redis.url = url.to_string();
    config
}
