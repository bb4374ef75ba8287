//! Start-up and shutdown of the three binaries: configuration, logging, backends chosen
//! by configuration, the servers and loops each binary runs, and a clean exit on
//! SIGTERM/SIGINT. The binaries themselves are one line each.

mod backends;
mod cli;
mod connections;
mod limits;
mod secret;
mod serve;

use std::process::ExitCode;
use std::sync::Arc;

use packages_jobs::{JobConsumer, JobPublisher};

pub use cli::Binary;

/// Why a process could not start or stopped; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is wrong: exit code 2, like a usage error.
    #[error("configuration: {0}")]
    Config(#[from] packages_config::ConfigError),
    /// Settings that load but cannot work (a key or URL the backend refuses): exit 2.
    #[error("{0}")]
    Usage(String),
    /// Something failed at run time (a backend out of reach, a port taken): exit 1.
    #[error("{0}")]
    Setup(String),
}

impl StartError {
    /// 2 for what the operator must change in the configuration, 1 for the rest, as
    /// clap's own usage errors (2) and Rust's `main` returning an error (1) do.
    fn exit_code(&self) -> ExitCode {
        match self {
            StartError::Config(_) | StartError::Usage(_) => ExitCode::from(2),
            StartError::Setup(_) => ExitCode::FAILURE,
        }
    }
}

/// The whole life of a binary; the exit code follows the operator contract.
pub fn main(binary: Binary) -> ExitCode {
    tune_allocator();
    let mut command = cli::parse(binary);
    if let Some(client) = command.client.take() {
        // A client of a service, perhaps on another host: none of the server's setup
        // (private file modes, configuration, secrets) applies. Failures exit 1; usage
        // errors already left with clap's 2.
        return match packages_client::run(client) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}: {e}", binary.name());
                ExitCode::FAILURE
            }
        };
    }
    limits::private_files();
    let _failpoints = fail::FailScenario::setup();
    match run(binary, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the cause's own text (libpq's spans several).
            let text = e.to_string();
            let line: Vec<&str> = text.split_whitespace().collect();
            eprintln!("{}: {}", binary.name(), line.join(" "));
            e.exit_code()
        }
    }
}

/// Two glibc allocator settings, each measured.
///
/// The mmap threshold is pinned, so glibc does not raise it as large blocks are freed.
/// Upload parts (5 MiB each, allocated and freed on different threads) would otherwise
/// move into the heap arenas and stay resident after every large upload: measured, a
/// worker kept 60 MiB after a 128 MiB package instead of returning to its 19 MiB
/// baseline. The threshold sits above the local store's 1 MiB read chunks, which then
/// reuse heap pages: below it, each chunk was a fresh mapping whose page faults took a
/// tenth of the CPU of a pass over local bits.
///
/// Fast bins are off. A list page frees hundreds of small strings at once, more than the
/// thread cache holds; the rest sat in fast bins until the next block of a KiB or more
/// (libpq's result blocks, the page's buffer) made glibc merge them all. The allocator
/// took a tenth of the API's CPU on a page of 50; freed straight into the ordinary bins,
/// the page was served 4-5 % more often in the same runs, and with the setting given to
/// every process of the run (`GLIBC_TUNABLES=glibc.malloc.mxfast=0`) a third more.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; it runs first in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 * 1024 * 1024);
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn run(binary: Binary, command: cli::Command) -> Result<(), StartError> {
    let settings = packages_config::load(command.config.as_deref())?;
    if let Some(token) = command.token {
        return secret::print_token(binary, &settings, &token);
    }
    if command.migrate {
        return migrate(&settings);
    }
    if settings.queue.url.is_embedded() && binary != Binary::Packages {
        return Err(StartError::Usage(format!(
            "queue.url: 'embedded' only works in the all-in-one `packages`; {} needs amqp://…",
            binary.name()
        )));
    }
    packages_telemetry::init_tracing(
        matches!(settings.log.format, packages_config::LogFormat::Json),
        &settings.log.level,
    )
    .map_err(|e| StartError::Setup(format!("log: {}", packages_blobstore::Chain(&e))))?;
    limits::raise_open_files();
    let runtime = build_runtime(&mut tokio::runtime::Builder::new_multi_thread())?;
    runtime.block_on(serve::serve(binary, settings))
}

fn build_runtime(
    builder: &mut tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, StartError> {
    builder.enable_all().build().map_err(|e| {
        StartError::Setup(format!(
            "cannot start the runtime: {}",
            packages_blobstore::Chain(&e)
        ))
    })
}

/// `migrate`: connecting migrates (under a lock on PostgreSQL, so it may run beside
/// starting processes); nothing else starts.
fn migrate(settings: &packages_config::Settings) -> Result<(), StartError> {
    let runtime = build_runtime(&mut tokio::runtime::Builder::new_current_thread())?;
    let db = runtime.block_on(backends::database(settings))?;
    println!("database migrated ({})", db.backend());
    Ok(())
}

/// The queue, seen as a publisher (relay) and a consumer (worker); one object for both.
pub(crate) struct Queue {
    pub publisher: Arc<dyn JobPublisher>,
    pub consumer: Arc<dyn JobConsumer>,
}
