//! The upload form reader on arbitrary bodies, fed in chunks of a size the input picks:
//! it must never panic, and never hand the sink more bytes than the body holds.
#![no_main]

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use bytes::Bytes;
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use packages_uploadform::{BitsSink, read};

struct Counting;

impl BitsSink for Counting {
    type Staged = usize;
    type Error = String;

    async fn ingest(
        &mut self,
        field: &mut actix_multipart::Field,
        _: u64,
    ) -> Result<usize, String> {
        let mut n = 0;
        while let Some(chunk) = field.next().await {
            n += chunk.map_err(|e| e.to_string())?.len();
        }
        Ok(n)
    }

    async fn discard(&mut self, _: usize) {}
}

// Input: chunk size, boundary length, the boundary, then the body.
fuzz_target!(|input: &[u8]| {
    let [chunk, boundary_len, rest @ ..] = input else {
        return;
    };
    let chunk = usize::from(*chunk).max(1);
    let Some((boundary, body)) = rest.split_at_checked(usize::from(*boundary_len % 80)) else {
        return;
    };
    let Ok(boundary) = std::str::from_utf8(boundary) else {
        return;
    };
    let mut headers = HeaderMap::new();
    let Ok(content_type) =
        HeaderValue::from_str(&format!("multipart/form-data; boundary=\"{boundary}\""))
    else {
        return;
    };
    headers.insert(header::CONTENT_TYPE, content_type);
    let stream = futures_util::stream::iter(
        body.chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let outcome = futures_executor::block_on(read(&headers, stream, &mut Counting));
    if let Ok(upload) = outcome {
        assert!(upload.bits.unwrap_or(0) <= body.len());
        assert!(upload.bits.is_some() || !upload.resources.is_empty());
    }
});
