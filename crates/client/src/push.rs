//! `packages push DIR`: scan and hash the directory, create the package (or take the
//! one given), ask which files the resource pool holds, zip the rest into an unnamed
//! temporary file, upload, and wait for `READY` or `FAILED`.

use std::collections::HashSet;
use std::io::{BufWriter, Seek};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::HumanBytes;
use serde_json::{Value, json};

use crate::api::DirectLink;
use crate::archive::{Entry, Kind, scan, write_zip};
use crate::{Api, ClientError, POLL_INTERVAL, Reporter};

/// Fingerprints per `POST /v3/resource_matches` (the cf CLI's batch; the service takes
/// up to 5000).
const MATCH_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub dir: PathBuf,
    /// The package to upload into, or the app to create one for.
    pub destination: Destination,
    /// How long to wait for the service to process the upload.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Destination {
    App(String),
    Package(String),
}

/// A package that ended `READY`.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub guid: String,
    pub sha1: String,
    pub sha256: String,
}

pub async fn push(api: &Api, options: &PushOptions, out: &Reporter) -> Result<Pushed, ClientError> {
    let dir = options.dir.clone();
    let spinner = out.spinner(&format!("scanning {}", dir.display()));
    let entries = blocking(move || scan(&dir)).await?;
    drop(spinner);
    let files: Vec<(&Entry, u64, &str)> = entries
        .iter()
        .filter_map(|e| match &e.kind {
            Kind::File { size, sha1 } => Some((e, *size, sha1.as_str())),
            _ => None,
        })
        .collect();
    let total: u64 = files.iter().map(|f| f.1).sum();
    out.line(&format!(
        "{}: {} files ({}), {} other entries",
        options.dir.display(),
        files.len(),
        HumanBytes(total),
        entries.len() - files.len()
    ));

    let guid = match &options.destination {
        Destination::App(app) => {
            let package = api.create_package(app).await?;
            let guid = string(&package, "guid", "POST /v3/packages")?;
            out.line(&format!("created package {guid} for app {app}"));
            guid
        }
        Destination::Package(guid) => {
            out.line(&format!("uploading into package {guid}"));
            guid.clone()
        }
    };

    // Empty files are never pooled; asking about them would only cost bytes.
    let fingerprints: Vec<Value> = files
        .iter()
        .filter(|f| f.1 > 0)
        .map(|(entry, size, sha1)| {
            json!({
                "checksum": {"value": sha1},
                "size_in_bytes": size,
                "path": entry.path,
                "mode": format!("{:o}", entry.mode),
            })
        })
        .collect();
    let mut matched = Vec::new();
    for batch in fingerprints.chunks(MATCH_BATCH) {
        matched.extend(api.resource_matches(batch).await?);
    }
    // Only what was asked counts: the answer echoes our own paths.
    let asked: HashSet<&str> = files.iter().map(|f| f.0.path.as_str()).collect();
    matched.retain(|m| m["path"].as_str().is_some_and(|p| asked.contains(p)));
    let skip: HashSet<String> = matched
        .iter()
        .filter_map(|m| m["path"].as_str().map(str::to_owned))
        .collect();
    let matched_bytes: u64 = matched
        .iter()
        .filter_map(|m| m["size_in_bytes"].as_u64())
        .sum();
    out.line(&format!(
        "{} of {} files ({}) are in the resource pool already",
        skip.len(),
        files.len(),
        HumanBytes(matched_bytes)
    ));

    let root = options.dir.clone();
    let spinner = out.spinner("zipping");
    let (zip, count) = blocking(move || {
        // Unnamed: the kernel removes it whatever happens to this process.
        let mut file = tempfile::tempfile()
            .map_err(|e| ClientError::io("cannot create a temporary file", e))?;
        let count = write_zip(&root, &entries, &skip, BufWriter::new(&mut file))?;
        Ok((file, count))
    })
    .await?;
    drop(spinner);
    let len = zip
        .metadata()
        .map_err(|e| ClientError::io("the temporary zip", e))?
        .len();
    let entries = if count == 1 { "entry" } else { "entries" };
    out.line(&format!("zipped {count} {entries} ({})", HumanBytes(len)));

    upload(api, &guid, &matched, zip, count, len, out).await?;
    wait(api, &guid, options.timeout, out).await
}

/// Uploads with the multipart form when the pool holds some files (only that form names
/// them), else to a direct-upload link when the service offers one.
async fn upload(
    api: &Api,
    guid: &str,
    matched: &[Value],
    zip: std::fs::File,
    count: usize,
    len: u64,
    out: &Reporter,
) -> Result<(), ClientError> {
    let link = if matched.is_empty() {
        api.direct_link(guid).await?
    } else {
        None
    };
    let via = if link.is_some() {
        "to the direct-upload link"
    } else {
        "with the upload request"
    };
    // Everything matched: the pool alone makes the package, no zip is sent.
    if count == 0 && !matched.is_empty() {
        out.line("uploading nothing: the resource pool holds every file");
        return api.upload(guid, matched, None).await.map(drop);
    }
    out.line(&format!("uploading {} {via}", HumanBytes(len)));
    let progress = out.transfer("upload", Some(len));
    let result = match &link {
        Some(link) => direct(api, link, reader(&zip)?, len, progress.clone()).await,
        None => {
            let bits = Some((reader(&zip)?, len, progress.clone()));
            api.upload(guid, matched, bits).await.map(drop)
        }
    };
    match result {
        Ok(()) => {
            progress.finish();
            Ok(())
        }
        Err(e) => {
            progress.abandon();
            Err(e)
        }
    }
}

async fn direct(
    api: &Api,
    link: &DirectLink,
    file: tokio::fs::File,
    len: u64,
    progress: crate::progress::Transfer,
) -> Result<(), ClientError> {
    if let Some(max) = link.max_size_in_bytes
        && len > max
    {
        return Err(ClientError::TooLarge { size: len, max });
    }
    api.put_direct(link, file, len, progress).await?;
    api.complete_direct(link).await.map(drop)
}

/// Polls the package until it leaves `PROCESSING_UPLOAD`.
async fn wait(
    api: &Api,
    guid: &str,
    timeout: Duration,
    out: &Reporter,
) -> Result<Pushed, ClientError> {
    let spinner = out.spinner(&format!("processing package {guid}"));
    let started = Instant::now();
    loop {
        let package = api.package(guid).await?;
        let request = format!("GET /v3/packages/{guid}");
        let state = string(&package, "state", &request)?;
        match state.as_str() {
            "READY" => {
                drop(spinner);
                let data = &package["data"];
                return Ok(Pushed {
                    guid: guid.to_owned(),
                    sha1: data["hash"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    sha256: data["checksum"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
            "FAILED" => {
                return Err(ClientError::Failed {
                    guid: guid.to_owned(),
                    reason: package["data"]["error"]
                        .as_str()
                        .unwrap_or("no reason given")
                        .to_owned(),
                });
            }
            "PROCESSING_UPLOAD" | "COPYING" => {}
            _ => {
                return Err(ClientError::Unexpected {
                    guid: guid.to_owned(),
                    state,
                });
            }
        }
        if started.elapsed() > timeout {
            return Err(ClientError::Timeout {
                guid: guid.to_owned(),
                state,
                secs: timeout.as_secs(),
            });
        }
        spinner.set_message(&format!("processing package {guid} ({state})"));
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A reader of the temporary zip from its start.
fn reader(zip: &std::fs::File) -> Result<tokio::fs::File, ClientError> {
    let mut file = zip
        .try_clone()
        .map_err(|e| ClientError::io("the temporary zip", e))?;
    file.rewind()
        .map_err(|e| ClientError::io("the temporary zip", e))?;
    Ok(tokio::fs::File::from_std(file))
}

fn string(value: &Value, key: &str, request: &str) -> Result<String, ClientError> {
    value[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Answer {
            request: request.to_owned(),
            detail: format!("no {key}"),
        })
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ClientError::io("a file task", std::io::Error::other(e.to_string())))?
}
