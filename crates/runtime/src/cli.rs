//! Command lines: `[--config FILE]` to serve, or `token --user GUID --scopes a,b` to mint
//! a bearer token for the configured HS256 secret; `packages` also has the clients
//! `push DIR --app GUID` and `download GUID -o FILE`, which need no configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use packages_client::{Destination, PushOptions, TargetFlags};

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

/// `packages`: serves, or runs one of its subcommands.
#[derive(Debug, Parser)]
struct PackagesCli {
    /// Configuration file (TOML); also `PACKAGES_CONFIG`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<PackagesSub>,
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

#[derive(Debug, Subcommand)]
enum PackagesSub {
    /// Print a signed bearer token for the configured HS256 secret.
    Token(TokenArgs),
    /// Zip a directory (honouring .cfignore), upload what the service lacks, and wait
    /// for the package to be READY.
    Push(PushArgs),
    /// Download a package's bits to a file, checked against the package's SHA-1.
    Download(DownloadArgs),
}

/// The service to talk to. Without flags: `PACKAGES_API` and `PACKAGES_TOKEN`, then the
/// cf CLI's `~/.cf/config.json` (`Target`, `AccessToken`).
#[derive(Debug, Clone, Args)]
struct TargetArgs {
    /// The API's URL, e.g. https://api.example.com [env: PACKAGES_API].
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// Bearer token (the environment keeps it out of `ps`) [env: PACKAGES_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("destination").required(true).args(["app", "package"])))]
struct PushArgs {
    /// The directory to push.
    dir: PathBuf,
    /// Create a new bits package for this app.
    #[arg(long, value_name = "APP_GUID")]
    app: Option<String>,
    /// Upload into this existing package (AWAITING_UPLOAD) instead.
    #[arg(long, value_name = "GUID")]
    package: Option<String>,
    /// Seconds to wait for the package to leave PROCESSING_UPLOAD.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    timeout: u64,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Debug, Clone, Args)]
struct DownloadArgs {
    /// The package's GUID.
    guid: String,
    /// Where to write the bits (replaced only once they are complete and checked).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
}

impl From<TargetArgs> for TargetFlags {
    fn from(args: TargetArgs) -> Self {
        TargetFlags {
            api: args.api,
            token: args.token,
        }
    }
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
    /// A client subcommand of `packages`: runs without the server's configuration.
    pub client: Option<packages_client::Command>,
}

fn args(binary: Binary) -> impl Iterator<Item = std::ffi::OsString> {
    std::env::args_os()
        .enumerate()
        .map(move |(i, a)| if i == 0 { binary.name().into() } else { a })
}

pub fn parse(binary: Binary) -> Command {
    match binary {
        Binary::Packages => {
            let cli = PackagesCli::parse_from(args(binary));
            let (token, client) = match cli.command {
                None => (None, None),
                Some(PackagesSub::Token(args)) => (Some(args), None),
                Some(PackagesSub::Push(args)) => (None, Some(push(args))),
                Some(PackagesSub::Download(args)) => (
                    None,
                    Some(packages_client::Command::Download {
                        target: args.target.into(),
                        guid: args.guid,
                        output: args.output,
                    }),
                ),
            };
            Command {
                config: cli.config,
                token,
                client,
            }
        }
        Binary::Api => {
            let cli = ServeCli::parse_from(args(binary));
            let token = cli.command.map(|Sub::Token(args)| args);
            Command {
                config: cli.config,
                token,
                client: None,
            }
        }
        Binary::Worker => {
            let cli = WorkerCli::parse_from(args(binary));
            Command {
                config: cli.config,
                token: None,
                client: None,
            }
        }
    }
}

fn push(args: PushArgs) -> packages_client::Command {
    // The argument group makes exactly one of the two present.
    let destination = match (args.package, args.app) {
        (Some(package), _) => Destination::Package(package),
        (None, app) => Destination::App(app.unwrap_or_default()),
    };
    packages_client::Command::Push {
        target: args.target.into(),
        options: PushOptions {
            dir: args.dir,
            destination,
            timeout: Duration::from_secs(args.timeout),
        },
    }
}
