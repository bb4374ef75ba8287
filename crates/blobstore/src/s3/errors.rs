//! rust-s3 and HTTP failures mapped onto [`BlobError`].

use s3::error::S3Error;

use crate::BlobError;

/// Maps rust-s3 errors onto the store's: 404 is NotFound, transport failures, timeouts,
/// throttling and 5xx are Unavailable (worth retrying), the rest is Other.
pub(super) fn map_error(e: S3Error, key: &str) -> BlobError {
    match e {
        S3Error::HttpFailWithBody(404, _) => BlobError::NotFound(key.to_string()),
        S3Error::HttpFailWithBody(status, body)
            if status >= 500 || status == 408 || status == 429 =>
        {
            BlobError::Unavailable(format!("S3 answered {status}: {}", summarize(&body)))
        }
        S3Error::HttpFailWithBody(status, body) => {
            BlobError::Other(format!("S3 answered {status}: {}", summarize(&body)))
        }
        S3Error::Reqwest(e) if e.is_builder() => {
            BlobError::Other(format!("S3 request: {}", error_chain(&e)))
        }
        // Connect, timeout, or the connection dropping mid-body.
        S3Error::Reqwest(e) => BlobError::Unavailable(format!("S3 request: {}", error_chain(&e))),
        S3Error::Io(e) => BlobError::Unavailable(format!("S3 request: {}", error_chain(&e))),
        other => BlobError::Other(format!("S3: {}", error_chain(&other))),
    }
}

/// reqwest's top-level message ("error sending request") hides the useful cause. Its
/// text names the request's URL, presigned ones included: query strings are removed.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::redact_urls(&text)
}

/// The `<Code>` and `<Message>` of an S3 error document, or the start of the body, with
/// any URL's query string removed.
pub(super) fn summarize(body: &str) -> String {
    crate::redact_urls(&summarize_raw(body))
}

fn summarize_raw(body: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&close)?;
        Some(body[start..start + len].to_string())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => {
            let trimmed = body.trim();
            if trimmed.is_empty() {
                "(empty body)".to_string()
            } else {
                trimmed.chars().take(200).collect()
            }
        }
    }
}

/// Turns "not found" into `None`.
pub(super) fn optional<T>(result: Result<T, BlobError>) -> Result<Option<T>, BlobError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(BlobError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// S3 timestamps are ISO 8601 (`2024-05-01T12:00:00.000Z`).
pub(super) fn parse_timestamp(key: &str, text: &str) -> Result<i64, BlobError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| {
            BlobError::Other(format!(
                "S3 listed {key:?} with unreadable LastModified {text:?}: {e}"
            ))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_by_status() {
        let xml = "<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
        assert!(map_error(S3Error::HttpFailWithBody(404, xml.into()), "k").is_not_found());
        for status in [500, 503, 408, 429] {
            assert!(matches!(
                map_error(S3Error::HttpFailWithBody(status, String::new()), "k"),
                BlobError::Unavailable(_)
            ));
        }
        match map_error(S3Error::HttpFailWithBody(403, xml.into()), "k") {
            BlobError::Other(msg) => assert!(msg.contains("NoSuchKey: gone"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn summarize_handles_odd_bodies() {
        assert_eq!(summarize(""), "(empty body)");
        assert_eq!(summarize("<Code>X</Code>"), "X");
        assert_eq!(summarize("<Code>X"), "<Code>X");
        assert_eq!(summarize(&"é".repeat(500)).chars().count(), 200);
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(
            parse_timestamp("k", "2024-05-01T12:00:00.000Z").unwrap(),
            1_714_564_800
        );
        assert!(parse_timestamp("k", "yesterday").is_err());
    }
}
