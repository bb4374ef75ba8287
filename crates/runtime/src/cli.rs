//! Command lines: `[--config FILE]` to serve, or `token --user GUID --scopes a,b` to mint
//! a bearer token for the configured HS256 secret.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// API and worker in one process, on the embedded default.
    Packages,
    Api,
    Worker,
}

impl Binary {
    pub fn name(self) -> &'static str {
        match self {
            Binary::Packages => "packages",
            Binary::Api => "packages-api",
            Binary::Worker => "packages-worker",
        }
    }
}

#[derive(Debug, Parser)]
struct ServeCli {
    /// Configuration file (TOML); also `PACKAGES_CONFIG`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Parser)]
struct WorkerCli {
    /// Configuration file (TOML); also `PACKAGES_CONFIG`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Print a signed bearer token for the configured HS256 secret.
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user's GUID (`user_id` claim).
    #[arg(long)]
    pub user: String,
    /// Comma-separated scopes, e.g. `cloud_controller.admin` or
    /// `cloud_controller.read,cloud_controller.write`.
    #[arg(long, value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Lifetime of the token in seconds.
    #[arg(long, default_value_t = 43_200)]
    pub ttl: u64,
}

pub struct Command {
    pub config: Option<PathBuf>,
    pub token: Option<TokenArgs>,
}

pub fn parse(binary: Binary) -> Command {
    match binary {
        Binary::Packages | Binary::Api => {
            let cli = ServeCli::parse_from(
                std::env::args_os()
                    .enumerate()
                    .map(|(i, a)| if i == 0 { binary.name().into() } else { a }),
            );
            let token = cli.command.map(|Sub::Token(args)| args);
            Command {
                config: cli.config,
                token,
            }
        }
        Binary::Worker => {
            let cli = WorkerCli::parse_from(
                std::env::args_os()
                    .enumerate()
                    .map(|(i, a)| if i == 0 { binary.name().into() } else { a }),
            );
            Command {
                config: cli.config,
                token: None,
            }
        }
    }
}
