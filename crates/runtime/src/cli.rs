//! Command lines: `[--config FILE]` to serve, `migrate` to run the database migrations
//! and exit, or `token --user GUID --scopes a,b` to mint a bearer token for the
//! configured HS256 secret; `packages` also has the clients `push DIR --app GUID` and
//! `download GUID -o FILE`, which need no configuration.

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

/// The configuration file, for every binary and subcommand that reads one.
#[derive(Debug, Clone, Args)]
struct ConfigArg {
    /// Configuration file (TOML); environment variables PACKAGES__SECTION__KEY override it.
    #[arg(long, value_name = "FILE", env = "PACKAGES_CONFIG", global = true)]
    config: Option<PathBuf>,
}

/// The package store of a Cloud Foundry-style platform, all in one process: the v3
/// packages API and its worker on SQLite, local blobs and an in-process queue (or on
/// PostgreSQL, RabbitMQ and S3, as configured).
#[derive(Debug, Parser)]
#[command(name = "packages", version)]
struct PackagesCli {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: Option<PackagesSub>,
}

/// The v3 packages API of a Cloud Foundry-style package store; jobs go to RabbitMQ for
/// packages-worker processes.
#[derive(Debug, Parser)]
#[command(name = "packages-api", version)]
struct ServeCli {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: Option<Sub>,
}

/// The worker of a Cloud Foundry-style package store: validates, hashes and stores
/// uploaded packages from RabbitMQ; run as many as you like.
#[derive(Debug, Parser)]
#[command(name = "packages-worker", version)]
struct WorkerCli {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: Option<WorkerSub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Print a signed bearer token for the configured HS256 secret.
    Token(TokenArgs),
    /// Run the database migrations, then exit (for a Kubernetes Job or init container).
    Migrate,
}

#[derive(Debug, Subcommand)]
enum WorkerSub {
    /// Run the database migrations, then exit (for a Kubernetes Job or init container).
    Migrate,
}

#[derive(Debug, Subcommand)]
enum PackagesSub {
    /// Print a signed bearer token for the configured HS256 secret.
    Token(TokenArgs),
    /// Run the database migrations, then exit (for a Kubernetes Job or init container).
    Migrate,
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
    /// `migrate`: run the migrations and exit.
    pub migrate: bool,
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
            let mut command = Command::serve(cli.config);
            match cli.command {
                None => {}
                Some(PackagesSub::Token(args)) => command.token = Some(args),
                Some(PackagesSub::Migrate) => command.migrate = true,
                Some(PackagesSub::Push(args)) => command.client = Some(push(args)),
                Some(PackagesSub::Download(args)) => {
                    command.client = Some(packages_client::Command::Download {
                        target: args.target.into(),
                        guid: args.guid,
                        output: args.output,
                    })
                }
            }
            command
        }
        Binary::Api => {
            let cli = ServeCli::parse_from(args(binary));
            let mut command = Command::serve(cli.config);
            match cli.command {
                None => {}
                Some(Sub::Token(args)) => command.token = Some(args),
                Some(Sub::Migrate) => command.migrate = true,
            }
            command
        }
        Binary::Worker => {
            let cli = WorkerCli::parse_from(args(binary));
            let mut command = Command::serve(cli.config);
            command.migrate = matches!(cli.command, Some(WorkerSub::Migrate));
            command
        }
    }
}

impl Command {
    fn serve(config: ConfigArg) -> Command {
        Command {
            config: config.config,
            token: None,
            migrate: false,
            client: None,
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
