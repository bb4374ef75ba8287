//! What can go wrong with a blobstore, and how to show it in one log line.
//!
//! Each variant's text is a short phrase of its own; the failure underneath, when there is
//! one, is its [`source`](std::error::Error::source). [`Chain`] renders the whole chain.

use std::error::Error;
use std::fmt;
use std::path::PathBuf;

use crate::redact_urls;

/// What went wrong. [`BlobError::is_retryable`] tells failures a later attempt may get
/// past from those it will not; log with [`Chain`] to keep the causes.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key holds no blob.
    #[error("blob not found: {0}")]
    NotFound(String),
    /// The key (or list prefix) is not one every store accepts.
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The store's settings cannot work, or do not match the server (no such bucket, a
    /// bucket name taken by someone else, a blob too large for the part size).
    #[error("blobstore settings: {0}")]
    Settings(String),
    /// An HTTP exchange with the store failed: no connection, a timeout, or the connection
    /// broke mid-body. `url` has no query string (a presigned URL carries its signature
    /// there), and `source` carries no URL at all.
    #[cfg(feature = "s3")]
    #[error("{what}{}", in_parentheses(url))]
    Http {
        what: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The store answered with an error status. `code` and `message` come from its error
    /// document (`message` is the start of the body when there is none), URLs in them
    /// without query strings.
    #[error("S3 answered {status}: {}", code_and_message(code.as_deref(), message))]
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The S3 client failed outside an HTTP exchange (credentials, signing, reading an
    /// answer).
    #[cfg(feature = "s3")]
    #[error("{what}")]
    S3 {
        what: &'static str,
        #[source]
        source: ::s3::error::S3Error,
    },
    /// The store answered something this client cannot use.
    #[error("unexpected answer from the store: {what}")]
    Unexpected {
        what: String,
        #[source]
        source: Option<Box<dyn Error + Send + Sync>>,
    },
    /// A filesystem operation of the local store failed on `path`.
    #[error("{what} {}", path.display())]
    Fs {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blobstore I/O error")]
    Io(#[from] std::io::Error),
    /// A stream brought another number of bytes than announced; nothing is stored.
    #[error("expected {expected} bytes, got {actual}")]
    Length { expected: u64, actual: u64 },
    /// A range asked for is larger than this process can hold in memory.
    #[error("range of {len} bytes does not fit in memory")]
    TooLarge { len: u64 },
    /// The consumer of a stream stopped it, say because a check of the bytes refused them.
    #[error("stream stopped: {0}")]
    Stopped(String),
    /// A writer was used again after one of its writes failed; nothing is stored.
    #[error("blob writer failed earlier; nothing is stored")]
    WriterFailed,
    /// A task of the store panicked or was cancelled.
    #[error("{what}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// Something this crate takes for granted did not hold.
    #[error("blobstore bug: {0}")]
    Bug(&'static str),
}

impl BlobError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, BlobError::NotFound(_))
    }

    /// Whether a later attempt may succeed: transport failures, timeouts, server errors,
    /// throttling (5xx, 408, 429) and I/O errors. Not: a missing blob, a refused request
    /// (bad credentials, bad request), settings, or a stream stopped on purpose.
    pub fn is_retryable(&self) -> bool {
        match self {
            #[cfg(feature = "s3")]
            BlobError::Http { source, .. } => match find_source::<BlobError>(source) {
                // The body stream handed to the store failed: what broke it decides.
                Some(cause) => cause.is_retryable(),
                None => !(source.is_builder() || source.is_redirect()),
            },
            BlobError::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            #[cfg(feature = "s3")]
            BlobError::S3 { source, .. } => matches!(source, ::s3::error::S3Error::Io(_)),
            BlobError::Fs { .. } | BlobError::Io(_) => true,
            BlobError::NotFound(_)
            | BlobError::InvalidKey { .. }
            | BlobError::Settings(_)
            | BlobError::Unexpected { .. }
            | BlobError::Length { .. }
            | BlobError::TooLarge { .. }
            | BlobError::Stopped(_)
            | BlobError::WriterFailed
            | BlobError::Task { .. }
            | BlobError::Bug(_) => false,
        }
    }
}

#[cfg(feature = "s3")]
fn in_parentheses(url: &str) -> String {
    if url.is_empty() {
        String::new()
    } else {
        format!(" ({url})")
    }
}

/// `code: message`, or whichever of the two there is.
pub(crate) fn code_and_message(code: Option<&str>, message: &str) -> String {
    match code {
        Some(code) if message.is_empty() => code.to_string(),
        Some(code) => format!("{code}: {message}"),
        None => message.to_string(),
    }
}

/// The first error of type `E` among the sources of `error`.
#[cfg(feature = "s3")]
fn find_source<'a, E: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a E> {
    let mut next = error.source();
    while let Some(cause) = next {
        if let Some(found) = cause.downcast_ref::<E>() {
            return Some(found);
        }
        next = cause.source();
    }
    None
}

#[cfg(feature = "s3")]
/// `e` as [`BlobError::Http`]. The URL of the request, which reqwest would print whole,
/// is taken out of `e` and kept without its query string; `url` stands in when `e` names
/// none.
pub(crate) fn http_error(what: &'static str, url: Option<&str>, e: reqwest::Error) -> BlobError {
    let url = match (e.url(), url) {
        (Some(named), _) => url_without_query(named),
        (None, Some(url)) => redact_urls(url),
        (None, None) => String::new(),
    };
    BlobError::Http {
        what,
        url,
        source: e.without_url(),
    }
}

#[cfg(feature = "s3")]
/// `url` without query string, fragment and user info.
fn url_without_query(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    // Only URLs that cannot be a base refuse these, and they have no user info to lose.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// An error and all its sources on one line, `outer: cause: root cause`, for logs.
///
/// URLs in every part lose their query strings ([`redact_urls`]), and a cause whose text
/// the part before it already shows (some libraries repeat their source's text) is not
/// repeated.
pub struct Chain<'a>(pub &'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&redact_urls(&shown))?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !shown.contains(&text) {
                write!(f, ": {}", redact_urls(&text))?;
                shown = text;
            }
            next = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io;

    use super::*;

    /// An error whose text repeats its source's, as rust-s3's and lapin's do.
    #[derive(Debug, thiserror::Error)]
    #[error("wrapper: {0}")]
    struct Repeating(#[source] io::Error);

    #[test]
    fn chain_shows_every_cause_once() {
        let e = BlobError::Fs {
            what: "cannot read the blob root",
            path: PathBuf::from("/data/blobs"),
            source: io::Error::from(io::ErrorKind::NotADirectory),
        };
        assert_eq!(e.to_string(), "cannot read the blob root /data/blobs");
        assert_eq!(
            Chain(&e).to_string(),
            "cannot read the blob root /data/blobs: not a directory"
        );

        let repeated = Repeating(io::Error::other(BlobError::NotFound("k".into())));
        assert_eq!(
            Chain(&repeated).to_string(),
            "wrapper: blob not found: k",
            "a cause shown by its parent is not shown again"
        );
        assert_eq!(
            Chain(&BlobError::WriterFailed).to_string(),
            "blob writer failed earlier; nothing is stored"
        );
    }

    #[test]
    fn chain_removes_query_strings() {
        let e = BlobError::Unexpected {
            what: "listing".to_string(),
            source: Some("see https://h/b/k?X-Amz-Signature=abc now".into()),
        };
        let text = Chain(&e).to_string();
        assert_eq!(
            text,
            "unexpected answer from the store: listing: see https://h/b/k now"
        );
    }

    #[test]
    fn status_text_names_code_and_message() {
        let e = BlobError::Status {
            status: 403,
            code: Some("AccessDenied".into()),
            message: "Access Denied".into(),
        };
        assert_eq!(
            e.to_string(),
            "S3 answered 403: AccessDenied: Access Denied"
        );
        let e = BlobError::Status {
            status: 502,
            code: None,
            message: "(empty body)".into(),
        };
        assert_eq!(e.to_string(), "S3 answered 502: (empty body)");
    }

    #[test]
    fn retryable_or_not() {
        let status = |status| BlobError::Status {
            status,
            code: None,
            message: String::new(),
        };
        for retryable in [
            status(500),
            status(503),
            status(408),
            status(429),
            BlobError::Io(io::Error::other("disk")),
            BlobError::Fs {
                what: "writing",
                path: PathBuf::from("/x"),
                source: io::Error::other("disk"),
            },
        ] {
            assert!(retryable.is_retryable(), "{retryable:?}");
        }
        for not in [
            status(400),
            status(403),
            status(409),
            BlobError::NotFound("k".into()),
            BlobError::InvalidKey {
                key: "/k".into(),
                reason: "absolute",
            },
            BlobError::Settings("bucket is empty".into()),
            BlobError::Length {
                expected: 2,
                actual: 1,
            },
            BlobError::Stopped("refused".into()),
            BlobError::WriterFailed,
            BlobError::Bug("never"),
        ] {
            assert!(!not.is_retryable(), "{not:?}");
        }
        assert!(BlobError::NotFound("k".into()).is_not_found());
        assert!(!status(404).is_not_found());
    }
}
