//! The [`Blobstore`] operations of the S3 store.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::header::RANGE;
use s3::error::S3Error;

use super::errors::{map_error, optional, parse_timestamp};
use super::{CONTENT_TYPE, PUT_URL_EXPIRY_SECS, S3Blobstore};
use crate::error::http_error;
use crate::{
    BlobError, BlobInfo, BlobWriter, Blobstore, ByteStream, Download, validate_key, validate_prefix,
};

/// Largest object S3 takes in one PUT; larger streams go through a multipart writer.
const SINGLE_PUT_MAX: u64 = 5 << 30;

/// Passes `body` on, failing it unless it brings exactly `size` bytes. The HTTP client
/// sends no more than the announced Content-Length and ignores the rest, so a longer body
/// would store its first `size` bytes as if complete; the chunk that reaches `size` is
/// held back until the body is known to end there, so a longer body never completes the
/// upload.
fn exactly(size: u64, body: ByteStream) -> ByteStream {
    let wrong_length = move |actual| BlobError::Length {
        expected: size,
        actual,
    };
    Box::pin(futures_util::stream::unfold(
        Some((body, 0u64)),
        move |state| async move {
            let (mut body, mut seen) = state?;
            let chunk = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => return Some((Err(e), None)),
                None if seen == size => return None,
                None => return Some((Err(wrong_length(seen)), None)),
            };
            seen += chunk.len() as u64;
            if seen > size {
                return Some((Err(wrong_length(seen)), None));
            }
            if seen < size {
                return Some((Ok(chunk), Some((body, seen))));
            }
            // All bytes are here: the last ones go out only if nothing follows.
            while let Some(next) = body.next().await {
                match next {
                    Ok(more) if more.is_empty() => {}
                    Ok(more) => return Some((Err(wrong_length(seen + more.len() as u64)), None)),
                    Err(e) => return Some((Err(e), None)),
                }
            }
            Some((Ok(chunk), None))
        },
    ))
}

impl S3Blobstore {
    /// The bytes of `key` from `first` to `last` (or to the end), through a presigned GET
    /// with a Range header when the read does not start at 0 or stops early. `None` when
    /// `first` lies past the end. A server that ignores the Range header sends the object
    /// from its start: the bytes before `first` are dropped here. (rust-s3's own ranged
    /// read moved about a third of the bytes per second, measured on 4 MiB ranges.)
    async fn get_from(
        &self,
        key: &str,
        first: u64,
        last: Option<u64>,
    ) -> Result<Option<ByteStream>, BlobError> {
        let url = self
            .control
            .presign_get(key, PUT_URL_EXPIRY_SECS, None)
            .await
            .map_err(|e| map_error(e, key))?;
        let mut request = self.http.get(url);
        match last {
            Some(last) => request = request.header(RANGE, format!("bytes={first}-{last}")),
            None if first > 0 => request = request.header(RANGE, format!("bytes={first}-")),
            None => {}
        }
        let response = request
            .send()
            .await
            .map_err(|e| http_error("S3 download failed", None, e))?;
        let status = response.status().as_u16();
        if status == 416 {
            return Ok(None);
        }
        if !response.status().is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(map_error(S3Error::HttpFailWithBody(status, body), key));
        }
        let shown = crate::redact_urls(response.url().as_str());
        let mut skip = if status == 200 { first } else { 0 };
        Ok(Some(Box::pin(response.bytes_stream().map(move |chunk| {
            let mut chunk =
                chunk.map_err(|e| http_error("S3 download broke off", Some(&shown), e))?;
            let skipped = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
            let _ = chunk.split_to(skipped);
            skip -= skipped as u64;
            Ok(chunk)
        }))))
    }
}

#[async_trait]
impl Blobstore for S3Blobstore {
    async fn writer(&self, key: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(self.s3_writer(key)?))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        validate_key(key)?;
        let head = optional(
            self.control
                .head_object(key)
                .await
                .map_err(|e| map_error(e, key)),
        )?;
        let Some((head, _)) = head else {
            return Ok(None);
        };
        let length = head
            .content_length
            .and_then(|len| u64::try_from(len).ok())
            .ok_or_else(|| BlobError::Unexpected {
                what: format!("no size for {key:?}"),
                source: None,
            })?;
        Ok(Some(length))
    }

    async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        validate_key(key)?;
        // Servers parse range bounds as signed 64-bit numbers.
        const MAX_POSITION: u64 = i64::MAX as u64;
        if len == 0 || offset > MAX_POSITION {
            // Nothing to read, but a missing blob is still reported as a read would.
            return match self.size(key).await? {
                Some(_) => Ok(Bytes::new()),
                None => Err(BlobError::NotFound(key.to_string())),
            };
        }
        // Open-ended ("to the end") when the last byte is out of range anyway.
        let last = offset
            .checked_add(len - 1)
            .filter(|last| *last <= MAX_POSITION);
        let Some(mut body) = self.get_from(key, offset, last).await? else {
            return Ok(Bytes::new());
        };
        // Read as a stream and stopped at `len`: a server that ignores the Range header
        // sends the whole object, which must not end up in memory.
        let want = usize::try_from(len).unwrap_or(usize::MAX);
        let mut read = bytes::BytesMut::with_capacity(want.min(8 << 20));
        while read.len() < want {
            let Some(chunk) = body.next().await else {
                break;
            };
            let chunk = chunk?;
            let room = want - read.len();
            read.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Ok(read.freeze())
    }

    /// One PUT to a presigned URL (UNSIGNED-PAYLOAD): the body streams through without
    /// being buffered, and without the per-part checksums of a multipart upload.
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<(), BlobError> {
        validate_key(key)?;
        if size > SINGLE_PUT_MAX {
            return crate::put_through_writer(self.writer(key).await?, size, body).await;
        }
        let url = self
            .control
            .presign_put(key, PUT_URL_EXPIRY_SECS, None, None)
            .await
            .map_err(|e| map_error(e, key))?;
        let response = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(reqwest::Body::wrap_stream(exactly(size, body)))
            .send()
            .await
            .map_err(|e| http_error("S3 upload failed", None, e))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(map_error(S3Error::HttpFailWithBody(status, body), key))
    }

    /// A GET of a presigned URL, streamed: rust-s3's own object stream is several
    /// times slower (it was the bottleneck of moving bits in the worker).
    async fn read(&self, key: &str) -> Result<ByteStream, BlobError> {
        self.read_from(key, 0).await
    }

    async fn read_from(&self, key: &str, offset: u64) -> Result<ByteStream, BlobError> {
        validate_key(key)?;
        // Servers parse range bounds as signed 64-bit numbers; no blob is that long.
        if offset > i64::MAX as u64 {
            return match self.size(key).await? {
                Some(_) => Ok(Box::pin(futures_util::stream::empty())),
                None => Err(BlobError::NotFound(key.to_string())),
            };
        }
        Ok(self
            .get_from(key, offset, None)
            .await?
            .unwrap_or_else(|| Box::pin(futures_util::stream::empty())))
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        validate_key(from)?;
        validate_key(to)?;
        // rust-s3 puts the source into x-amz-copy-source verbatim, and S3 reads that
        // header URL-encoded, so encode it here (keeping the slashes).
        let source = s3::signing::uri_encode(from, false);
        self.transfer
            .copy_object_internal(&source, to)
            .await
            .map(|_| ())
            .map_err(|e| map_error(e, from))
    }

    fn copies_ranges(&self) -> bool {
        true
    }

    async fn copy_range(
        &self,
        from: &str,
        offset: u64,
        len: u64,
        to: &str,
    ) -> Result<(), BlobError> {
        validate_key(from)?;
        validate_key(to)?;
        self.copy_parts(from, offset, len, to).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), BlobError> {
        if from == to {
            validate_key(from)?;
            return match self.size(from).await? {
                Some(_) => Ok(()),
                None => Err(BlobError::NotFound(from.to_string())),
            };
        }
        self.copy(from, to).await?;
        self.delete(from).await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        match self.control.delete_object(key).await {
            Ok(_) => Ok(()),
            Err(e) => match map_error(e, key) {
                BlobError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn upload_url(&self, key: &str, expiry: Duration) -> Result<Option<String>, BlobError> {
        validate_key(key)?;
        // S3 takes 1 s to one week.
        let secs = u32::try_from(expiry.as_secs())
            .unwrap_or(u32::MAX)
            .clamp(1, super::MAX_PRESIGN_EXPIRY);
        self.public
            .presign_put(key, secs, None, None)
            .await
            .map(Some)
            .map_err(|e| map_error(e, key))
    }

    async fn download(&self, key: &str) -> Result<Download, BlobError> {
        // A URL for a missing blob would only turn into an S3 error page at the
        // client; report it here like the local store does.
        if self.size(key).await?.is_none() {
            return Err(BlobError::NotFound(key.to_string()));
        }
        let url = self
            .public
            .presign_get(key, self.presign_expiry_secs, None)
            .await
            .map_err(|e| map_error(e, key))?;
        Ok(Download::Redirect { url })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        validate_prefix(prefix)?;
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, _) = self
                .control
                .list_page(
                    prefix.to_string(),
                    None,
                    token.clone(),
                    None,
                    self.list_page_size,
                )
                .await
                .map_err(|e| self.bucket_error(e))?;
            for object in page.contents {
                let last_modified = parse_timestamp(&object.key, &object.last_modified)?;
                found.push(BlobInfo {
                    key: object.key,
                    size: object.size,
                    last_modified,
                });
            }
            match page.next_continuation_token {
                Some(next) if !next.is_empty() => {
                    if token.as_deref() == Some(next.as_str()) {
                        return Err(BlobError::Unexpected {
                            what: "listing repeated its continuation token".to_string(),
                            source: None,
                        });
                    }
                    token = Some(next);
                }
                _ if page.is_truncated => {
                    return Err(BlobError::Unexpected {
                        what: "listing truncated without a continuation token".to_string(),
                        source: None,
                    });
                }
                _ => break,
            }
        }
        Ok(found)
    }

    async fn check(&self) -> Result<(), BlobError> {
        self.probe_bucket().await.map_err(|e| self.bucket_error(e))
    }

    fn kind(&self) -> &'static str {
        "s3"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::s3::tests::{assert_no_credentials, dead_store};

    /// What `exactly(size, …)` lets through of the given chunks: the bytes before the
    /// first error, and that error.
    async fn through(size: u64, chunks: &[&'static str]) -> (Vec<u8>, Option<BlobError>) {
        let chunks: Vec<Result<Bytes, BlobError>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        let mut body = exactly(size, Box::pin(futures_util::stream::iter(chunks)));
        let mut passed = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => passed.extend_from_slice(&chunk),
                Err(e) => return (passed, Some(e)),
            }
        }
        (passed, None)
    }

    #[tokio::test]
    async fn streaming_put_body_must_have_the_announced_length() {
        for chunks in [&["hello"][..], &["he", "", "llo"], &["hello", ""]] {
            let (passed, error) = through(5, chunks).await;
            assert_eq!(passed, b"hello", "{chunks:?}");
            assert!(error.is_none(), "{chunks:?}: {error:?}");
        }
        assert!(matches!(through(0, &[]).await, (passed, None) if passed.is_empty()));
        // Longer: the bytes that would complete the upload are never sent.
        for (chunks, actual) in [(&["hello world"][..], 11), (&["hello", " world"], 11)] {
            let (passed, error) = through(5, chunks).await;
            assert!(passed.is_empty(), "{chunks:?}");
            assert!(
                matches!(error, Some(BlobError::Length { expected: 5, actual: a }) if a == actual),
                "{chunks:?}: {error:?}"
            );
        }
        let (passed, error) = through(5, &["he", "llo!"]).await;
        assert_eq!(passed, b"he");
        assert!(matches!(error, Some(BlobError::Length { actual: 6, .. })));
        // Shorter.
        let (passed, error) = through(5, &["hel"]).await;
        assert_eq!(passed, b"hel");
        assert!(matches!(error, Some(BlobError::Length { actual: 3, .. })));
    }

    /// Streaming reads and writes use presigned URLs, whose signature must not reach the
    /// error; requests rust-s3 signs itself go the same way.
    #[tokio::test]
    async fn failed_requests_show_no_signature() {
        let store = dead_store();
        let Err(e) = store.read("gu/id/k").await else {
            panic!("read from a dead endpoint succeeded");
        };
        assert!(
            matches!(e, BlobError::Http { .. }) && e.is_retryable(),
            "{e:?}"
        );
        assert_no_credentials(&e, "/b/gu/id/k");

        let body: ByteStream =
            Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b"abc"))]));
        let e = store.put_stream("gu/id/k", 3, body).await.unwrap_err();
        assert!(
            matches!(e, BlobError::Http { .. }) && e.is_retryable(),
            "{e:?}"
        );
        assert_no_credentials(&e, "/b/gu/id/k");

        let e = store.size("gu/id/k").await.unwrap_err();
        assert!(
            matches!(e, BlobError::Http { .. }) && e.is_retryable(),
            "{e:?}"
        );
        assert_no_credentials(&e, "/b/gu/id/k");
    }
}
