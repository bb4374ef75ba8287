//! The client side of `packages push` and `packages download`.
//!
//! `push` zips a directory as the cf CLI does (`.cfignore`, and the files it always leaves
//! out), asks the service which files its resource pool holds already, uploads the rest
//! (to a direct-upload link when it offers one and nothing matched), then waits for the
//! package to end `READY` or `FAILED`. `download` streams a package's bits to a file and
//! checks them against the package's SHA-1. Zips and downloads stream through files:
//! memory stays flat whatever their size.

mod api;
mod archive;
mod cfignore;
mod download;
mod error;
mod progress;
mod push;
mod target;

use std::path::PathBuf;
use std::time::Duration;

pub use api::Api;
pub(crate) use cfignore::CfIgnore;
pub use download::{Downloaded, download};
pub use error::ClientError;
pub use progress::Reporter;
pub use push::{Destination, PushOptions, Pushed, push};
pub use target::{Target, TargetFlags};

/// One client command, as the command line gives it.
#[derive(Debug, Clone)]
pub enum Command {
    Push {
        target: TargetFlags,
        options: PushOptions,
    },
    Download {
        target: TargetFlags,
        guid: String,
        output: PathBuf,
    },
}

/// Runs a command to its end, reporting on stdout (a progress bar on a terminal, plain
/// lines otherwise); the error is the one line to print on stderr.
pub fn run(command: Command) -> Result<(), ClientError> {
    let env = |name: &str| std::env::var(name).ok();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::io("cannot start the runtime", e))?;
    let reporter = Reporter::stdout();
    runtime.block_on(async {
        match command {
            Command::Push { target, options } => {
                let api = Api::new(Target::resolve(&target, &env)?)?;
                let pushed = push(&api, &options, &reporter).await?;
                reporter.line(&format!("package {} is READY", pushed.guid));
                reporter.line(&format!("sha1:   {}", pushed.sha1));
                reporter.line(&format!("sha256: {}", pushed.sha256));
                Ok(())
            }
            Command::Download {
                target,
                guid,
                output,
            } => {
                let api = Api::new(Target::resolve(&target, &env)?)?;
                let got = download(&api, &guid, &output, &reporter).await?;
                reporter.line(&format!(
                    "downloaded package {guid} to {} ({} bytes)",
                    output.display(),
                    got.size
                ));
                reporter.line(&format!("sha1:   {}", got.sha1));
                Ok(())
            }
        }
    })
}

/// How often the package's state is read while the service processes it.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
