//! The `shotfarm` command: `serve` runs the daemon, `check-config` validates a configuration,
//! `accounts`, `keys` and `credits` are the operator's commands against the ledger's Redis.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shotfarm::config::Config;

#[derive(Parser)]
#[command(name = "shotfarm", version, about = "Self-hosted screenshot API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Configuration file (TOML). Without it, the embedded defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address of the public API (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the Prometheus exporter (overrides server.metrics_listen).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Redis URL of the ledger (overrides redis.url).
        #[arg(long)]
        redis_url: Option<String>,
        /// Let captures reach this non-public range too (CIDR or address; repeatable; added to
        /// egress.allow).
        #[arg(long = "allow-egress", value_name = "CIDR")]
        allow_egress: Vec<String>,
    },
    /// Validate a configuration and report every problem at once.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Create or inspect accounts.
    Accounts {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Create API keys.
    Keys {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Grant or take back credits.
    Credits {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Payments through Polar.
    Payments {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: PaymentsCommand,
    },
}

#[derive(Subcommand)]
enum PaymentsCommand {
    /// Read every order of the Polar organization and apply what is missing: paid orders'
    /// grants and refunded shares. Safe to run any time, on any host; nothing applies twice.
    Reconcile,
}

/// Which Redis the operator command talks to.
#[derive(clap::Args)]
struct Target {
    /// Configuration file (TOML); its [redis] section is used.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Redis URL (overrides redis.url).
    #[arg(long, global = true)]
    redis_url: Option<String>,
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account; it gets the sign-up bonus like any other.
    Create {
        #[arg(long)]
        email: String,
        /// Read a password from standard input (without it, the account can only use API keys).
        #[arg(long)]
        password_stdin: bool,
        /// Extra credits granted at once (an `adjustment` transaction).
        #[arg(long, default_value_t = 0)]
        credits: i64,
    },
    /// Set (or replace) an account's dashboard password, read from a file or standard input
    /// (never from the command line, where `ps` would show it).
    #[command(group(clap::ArgGroup::new("source").required(true).args(["password_file", "password_stdin"])))]
    SetPassword {
        /// Account id (`acc_…`) or email.
        #[arg(long)]
        account: String,
        /// Read the password from this file (its first line).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Read the password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Show an account: balance, open holds, recent transactions and an invariant check.
    Show {
        /// Account id (`acc_…`) or email.
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key; the secret is printed once.
    Create {
        /// Account id (`acc_…`) or email.
        #[arg(long)]
        account: String,
        #[arg(long, default_value = "default")]
        name: String,
    },
}

#[derive(Subcommand)]
enum CreditsCommand {
    /// Grant credits (negative amounts take them back), recorded as an `adjustment`.
    Grant {
        /// Account id (`acc_…`) or email.
        #[arg(long)]
        account: String,
        #[arg(long, allow_hyphen_values = true)]
        amount: i64,
        /// Why: shown in the account's transaction history.
        #[arg(long)]
        reason: String,
    },
}

/// The exit status of a configuration error (sysexits' EX_CONFIG); the systemd unit's
/// `RestartPreventExitStatus` names it, so a bad config is not restarted in a loop.
const EX_CONFIG: u8 = 78;

fn operator_config(target: &Target) -> Result<Config, ExitCode> {
    Config::load(target.config.as_deref())
        .and_then(|mut c| {
            if let Some(url) = &target.redis_url {
                c.redis.url = url.clone();
            }
            c.validate().map(|()| c)
        })
        .map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(EX_CONFIG)
        })
}

/// Runs an operator command; errors are printed and exit with 1.
fn operate<F, Fut>(target: &Target, f: F) -> ExitCode
where
    F: FnOnce(shotfarm::ops::Operator) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let config = match operator_config(target) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = shotfarm::ops::block_on(|| async move {
        let operator = shotfarm::ops::Operator::connect(&config).await?;
        f(operator).await
    });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shotfarm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The first line of `path` (a password file), without its line ending.
fn read_password_file(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Accounts { target, command } => match command {
            AccountsCommand::Create {
                email,
                password_stdin,
                credits,
            } => {
                let password = if password_stdin {
                    match read_password() {
                        Ok(p) => Some(p),
                        Err(e) => {
                            eprintln!("shotfarm: cannot read the password: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                } else {
                    None
                };
                operate(&target, |op| async move {
                    let account = op
                        .create_account(&email, password.as_deref(), credits)
                        .await?;
                    op.show(&account).await
                })
            }
            AccountsCommand::SetPassword {
                account,
                password_file,
                password_stdin: _,
            } => {
                let password = match &password_file {
                    Some(path) => read_password_file(path),
                    None => read_password(),
                };
                let password = match password {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("shotfarm: cannot read the password: {e:#}");
                        return ExitCode::FAILURE;
                    }
                };
                operate(&target, |op| async move {
                    let found = op.resolve(&account).await?;
                    op.set_password(&found.id, &password).await?;
                    Ok(format!("password set for {} ({})\n", found.email, found.id))
                })
            }
            AccountsCommand::Show { account } => operate(&target, |op| async move {
                let account = op.resolve(&account).await?;
                op.show(&account).await
            }),
        },
        Command::Keys {
            target,
            command: KeysCommand::Create { account, name },
        } => operate(&target, |op| async move {
            let account = op.resolve(&account).await?;
            let (info, secret) = op.create_key(&account.id, &name).await?;
            Ok(format!(
                "key {} ({}) for {}\n{secret}\n(the secret is shown only this once)\n",
                info.id, info.name, account.id
            ))
        }),
        Command::Credits {
            target,
            command:
                CreditsCommand::Grant {
                    account,
                    amount,
                    reason,
                },
        } => operate(&target, |op| async move {
            let account = op.resolve(&account).await?;
            let balance = op.grant(&account.id, amount, &reason).await?;
            Ok(format!("{} balance {balance}\n", account.id))
        }),
        Command::Payments {
            target,
            command: PaymentsCommand::Reconcile,
        } => operate(&target, |op| async move { op.reconcile_payments().await }),
        Command::CheckConfig { config } => match Config::load(config.as_deref()) {
            Ok(_) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EX_CONFIG)
            }
        },
        Command::Serve {
            config,
            listen,
            metrics_listen,
            redis_url,
            allow_egress,
        } => {
            return_large_buffers_to_the_system();
            let loaded = Config::load(config.as_deref()).and_then(|mut c| {
                if let Some(addr) = listen {
                    c.server.listen = addr;
                }
                if let Some(addr) = metrics_listen {
                    c.server.metrics_listen = addr;
                }
                if let Some(url) = redis_url {
                    c.redis.url = url;
                }
                c.egress.allow.extend(allow_egress);
                c.validate().map(|()| c)
            });
            let config = match loaded {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            shotfarm::telemetry::logging::init(&config.log);
            // Not root: a user namespace of our own lets the daemon give its browsers a network
            // namespace (and Chromium its sandbox). Only possible while single-threaded: here.
            if config.chromium.network_isolation {
                if let Err(e) = shotfarm::egress::netns::enter_own_user_namespace() {
                    tracing::warn!("cannot enter a user namespace of our own: {e}");
                }
            }
            match shotfarm::app::run(config, shotfarm::app::shutdown_signal(), |_| {}) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("shotfarm: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Every capture allocates a few buffers of 1–8 MB (decoded pixels, the recompressed PNG).
/// glibc raises its mmap threshold after the first such buffer is freed, so later ones come from
/// the heap and stay resident after use, in every arena a pool thread touched. A fixed threshold
/// keeps them mmapped and returns them on free: the daemon's peak PSS at 8 captures in flight went
/// from 40–49 MB to 28–32 MB for about 1 ms more CPU per capture (page faults). Set before any
/// capture runs; Chromium, a separate program, is not affected.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters, under glibc's own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024);
    }
}
