//! Why a client command failed; each prints as one line.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no API to talk to: pass --api URL, set PACKAGES_API, or log in with the cf CLI (cf login)"
    )]
    NoApi,
    #[error(
        "no token for {api}: pass --token TOKEN, set PACKAGES_TOKEN, or log in to it with the cf CLI (cf login)"
    )]
    NoToken { api: String },
    #[error("{}: {detail}", path.display())]
    CfConfig { path: PathBuf, detail: String },
    #[error("{what}: {}", Chain(source))]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Ignore { path: PathBuf, detail: String },
    #[error("cannot write the zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("{} changed while it was being pushed; push again", path.display())]
    FileChanged { path: PathBuf },
    #[error("{}: the name is not UTF-8, which a zip entry and a fingerprint need", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: not a directory", path.display())]
    NotDirectory { path: PathBuf },
    #[error("{request}: {}", Chain(source))]
    Http {
        request: String,
        source: reqwest::Error,
    },
    /// A Cloud Controller error answer (or any other non-success status).
    #[error("{request}: {status} {title}: {detail}")]
    Api {
        request: String,
        status: u16,
        title: String,
        detail: String,
    },
    #[error("{request}: unexpected answer: {detail}")]
    Answer { request: String, detail: String },
    #[error("the zip is {size} bytes, more than the service takes ({max} bytes)")]
    TooLarge { size: u64, max: u64 },
    #[error("package {guid} FAILED: {reason}")]
    Failed { guid: String, reason: String },
    #[error("package {guid} ended {state}, neither READY nor FAILED")]
    Unexpected { guid: String, state: String },
    #[error("package {guid} is still {state} after {secs} s; see GET /v3/packages/{guid}")]
    Timeout {
        guid: String,
        state: String,
        secs: u64,
    },
    #[error("package {guid}: downloaded bits have SHA-1 {got}, the package says {expected}")]
    Checksum {
        guid: String,
        expected: String,
        got: String,
    },
}

impl ClientError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ClientError::Io {
            what: what.into(),
            source,
        }
    }
}

/// An error with its causes, `: `-separated: reqwest's own text ("error sending request")
/// says nothing of the refused connection beneath it.
struct Chain<'a>(&'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}
