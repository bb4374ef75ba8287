//! `packages download GUID -o FILE`: streams the bits into a temporary file next to
//! FILE, checks their SHA-1 against the package's, and only then renames it to FILE, so
//! FILE is never a partial or corrupt download.

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;
use sha1::{Digest, Sha1};

use crate::{Api, ClientError, Reporter};

#[derive(Debug, Clone)]
pub struct Downloaded {
    pub size: u64,
    pub sha1: String,
}

pub async fn download(
    api: &Api,
    guid: &str,
    output: &Path,
    out: &Reporter,
) -> Result<Downloaded, ClientError> {
    let package = api.package(guid).await?;
    let expected = package["data"]["hash"]["value"].as_str().map(str::to_owned);
    let res = api.download(guid).await?;
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".packages-download-").suffix(".part");
    // Like any file the user creates: 0666 less the umask (a temporary file is 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut file = builder
        .tempfile_in(parent)
        .map_err(|e| ClientError::io(format!("cannot write in {}", parent.display()), e))?;
    let progress = out.transfer("download", res.content_length());
    let mut hasher = Sha1::new();
    let mut size = 0u64;
    let mut body = res.bytes_stream();
    let request = format!("GET /v3/packages/{guid}/download");
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(source) => {
                progress.abandon();
                return Err(ClientError::Http { request, source });
            }
        };
        hasher.update(&chunk);
        // Writes of a few hundred KiB to a local file: brief enough for this thread.
        if let Err(e) = file.write_all(&chunk) {
            progress.abandon();
            return Err(ClientError::io(format!("{}", file.path().display()), e));
        }
        size += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    let sha1 = hex::encode(hasher.finalize());
    if let Some(expected) = expected
        && !expected.eq_ignore_ascii_case(&sha1)
    {
        return Err(ClientError::Checksum {
            guid: guid.to_owned(),
            expected,
            got: sha1,
        });
    }
    file.as_file()
        .sync_all()
        .map_err(|e| ClientError::io(format!("{}", file.path().display()), e))?;
    file.persist(output)
        .map_err(|e| ClientError::io(format!("{}", output.display()), e.error))?;
    Ok(Downloaded { size, sha1 })
}
