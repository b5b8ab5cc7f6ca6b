//! The `shotfarm` command: `serve` runs the daemon, `check-config` validates a configuration.

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
    },
    /// Validate a configuration and report every problem at once.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(config.as_deref()) {
            Ok(_) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Serve {
            config,
            listen,
            metrics_listen,
            redis_url,
        } => {
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
                c.validate().map(|()| c)
            });
            let config = match loaded {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            shotfarm::telemetry::logging::init(&config.log);
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
