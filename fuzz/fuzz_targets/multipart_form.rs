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

    async fn ingest(&mut self, field: &mut actix_multipart::Field) -> Result<usize, String> {
        let mut n = 0;
        while let Some(chunk) = field.next().await {
            n += chunk.map_err(|e| e.to_string())?.len();
        }
        Ok(n)
    }

    async fn discard(&mut self, _: usize) {}
}

fuzz_target!(|input: &[u8]| {
    let Some((&chunk, body)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("multipart/form-data; boundary=XB"),
    );
    let stream = futures_util::stream::iter(
        body.chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let outcome = futures_executor::block_on(read(&headers, stream, &mut Counting));
    if let Ok(bits) = outcome {
        assert!(bits <= body.len());
    }
});
