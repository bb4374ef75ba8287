//! rust-s3 and HTTP failures mapped onto [`BlobError`].

use s3::error::S3Error;

use crate::error::{code_and_message, http_error};
use crate::{BlobError, redact_urls};

/// Maps rust-s3 errors onto the store's: 404 is NotFound, other error statuses are Status,
/// failed exchanges Http (their URL without query string), the rest S3.
pub(super) fn map_error(e: S3Error, key: &str) -> BlobError {
    match e {
        S3Error::HttpFailWithBody(404, _) => BlobError::NotFound(key.to_string()),
        S3Error::HttpFailWithBody(status, body) => status_error(status, &body),
        S3Error::Reqwest(e) => http_error("S3 request failed", None, e),
        source => BlobError::S3 {
            what: "S3 client failed",
            source,
        },
    }
}

/// An error answer as [`BlobError::Status`], with any URL's query string removed.
fn status_error(status: u16, body: &str) -> BlobError {
    let (code, message) = error_document(body);
    BlobError::Status {
        status,
        code: code.map(|code| redact_urls(&code)),
        message: redact_urls(&message),
    }
}

/// The `<Code>` and `<Message>` of an S3 error document, or the start of the body, with
/// any URL's query string removed.
pub(super) fn summarize(body: &str) -> String {
    let (code, message) = error_document(body);
    redact_urls(&code_and_message(code.as_deref(), &message))
}

/// The `<Code>` and `<Message>` of an S3 error document (the message empty when there is
/// none); without a code, the start of the body as the message.
fn error_document(body: &str) -> (Option<String>, String) {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&close)?;
        Some(body[start..start + len].to_string())
    };
    if let Some(code) = element("Code") {
        return (Some(code), element("Message").unwrap_or_default());
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        (None, "(empty body)".to_string())
    } else {
        (None, trimmed.chars().take(200).collect())
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
        .map_err(|e| BlobError::Unexpected {
            what: format!("S3 listed {key:?} with unreadable LastModified {text:?}"),
            source: Some(Box::new(e)),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::s3::tests::{assert_no_credentials, dead_store};

    #[test]
    fn errors_map_by_status() {
        let xml = "<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
        assert!(map_error(S3Error::HttpFailWithBody(404, xml.into()), "k").is_not_found());
        for status in [500, 503, 408, 429] {
            let e = map_error(S3Error::HttpFailWithBody(status, String::new()), "k");
            assert!(matches!(e, BlobError::Status { .. }), "{e:?}");
            assert!(e.is_retryable(), "{e:?}");
        }
        for status in [400, 403, 409] {
            let e = map_error(S3Error::HttpFailWithBody(status, xml.into()), "k");
            assert!(!e.is_retryable(), "{e:?}");
        }
        match map_error(S3Error::HttpFailWithBody(403, xml.into()), "k") {
            BlobError::Status {
                status: 403,
                code: Some(code),
                message,
            } => assert_eq!((code.as_str(), message.as_str()), ("NoSuchKey", "gone")),
            other => panic!("{other:?}"),
        }
        let e = map_error(S3Error::HttpFail, "k");
        assert!(matches!(e, BlobError::S3 { .. }), "{e:?}");
        assert!(!e.is_retryable());
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
        let e = parse_timestamp("k", "yesterday").unwrap_err();
        assert!(
            matches!(
                e,
                BlobError::Unexpected {
                    source: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    /// reqwest names the URL of a failed request in its text; for a presigned URL that
    /// includes the signature. Whatever path the error takes, no rendering shows it.
    #[tokio::test]
    async fn no_signature_in_failed_presigned_requests() {
        let store = dead_store();
        let url = store
            .control
            .presign_get("gu/id/k", 600, None)
            .await
            .unwrap();
        assert!(url.contains("X-Amz-Signature="), "{url}");
        let sent = reqwest::get(&url).await.unwrap_err();
        assert!(sent.to_string().contains("X-Amz-Signature="), "{sent}");

        // Through rust-s3, which wraps reqwest's errors.
        let e = map_error(S3Error::Reqwest(sent), "gu/id/k");
        assert!(matches!(e, BlobError::Http { .. }), "{e:?}");
        assert!(e.is_retryable());
        assert_no_credentials(&e, "/b/gu/id/k");

        // An error document quoting the URL.
        let body = format!("<Error><Code>AccessDenied</Code><Message>{url}</Message></Error>");
        let e = status_error(403, &body);
        assert_no_credentials(&e, "/b/gu/id/k");
        assert_eq!(
            summarize(&body),
            format!("AccessDenied: {}", redact_urls(&url))
        );
    }
}
