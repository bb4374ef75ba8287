//! The multipart upload form: one `bits` file part, streamed to a sink, GA's `resources`
//! part (the fingerprints of files left to the resource pool), and unknown parts to
//! report. Everything but the bits is bounded: at most [`MAX_PARTS`] parts,
//! [`MAX_RESOURCES_BYTES`] of `resources` and [`MAX_FIELDS_BYTES`] of the other parts, so
//! a client cannot make the service read gigabytes of junk before it answers.
//!
//! Free of the service's backends, so that it can be fuzzed on its own.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_multipart::{Field, Multipart};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use packages_domain::resources::Fingerprint;
use packages_domain::upload::{self, MultipartSummary};
use packages_domain::validation::Invalid;

/// Most parts a form may have (clients send one or two).
pub const MAX_PARTS: usize = 64;
/// Most bytes of all the parts other than `bits` and `resources` together.
pub const MAX_FIELDS_BYTES: usize = 1 << 20;
/// Most bytes of `resources` (GA's limit): about 50,000 fingerprints.
pub const MAX_RESOURCES_BYTES: usize = 8 << 20;
/// Most bytes a form that is accepted can have after its bits: `resources`, the other
/// parts' budget, every part's headers with room to spare, and the closing boundary.
pub const AFTER_BITS_ALLOWANCE: u64 = (MAX_RESOURCES_BYTES + MAX_FIELDS_BYTES + (1 << 20)) as u64;

/// Where the `bits` part goes.
pub trait BitsSink {
    type Staged;
    type Error;

    /// Consumes the part's bytes; what it returns is handed back on success. `at_least`
    /// is how many bytes the part has if the form is to be accepted (the request's
    /// Content-Length less what came before and [`AFTER_BITS_ALLOWANCE`]), 0 when the
    /// request announced no length.
    fn ingest(
        &mut self,
        field: &mut Field,
        at_least: u64,
    ) -> impl Future<Output = Result<Self::Staged, Self::Error>>;

    /// Throws away what `ingest` stored when the form as a whole is refused.
    fn discard(&mut self, staged: Self::Staged) -> impl Future<Output = ()>;
}

/// Why a form was refused; `E` is the sink's error.
#[derive(Debug)]
pub enum FormError<E> {
    /// The form broke a rule (422).
    Invalid(Invalid),
    /// The body could not be read as a form (400), or stopped arriving.
    Unreadable(String),
    /// Storing the bits failed, or they were too large.
    Sink(E),
    /// The `resources` part is longer than [`MAX_RESOURCES_BYTES`] (413).
    ResourcesTooLarge { limit: usize },
}

/// A form that passed: the staged bits, if it had any, and the fingerprints of the files
/// to take from the resource pool (empty when none). At least one of the two is there.
#[derive(Debug)]
pub struct Upload<Staged> {
    pub bits: Option<Staged>,
    pub resources: Vec<Fingerprint>,
}

/// Reads the form in `body` (its boundary from `headers`) part by part; the bits go to
/// `sink`, the rest is checked once all were seen.
pub async fn read<S, B>(
    headers: &HeaderMap,
    body: B,
    sink: &mut S,
) -> Result<Upload<S::Staged>, FormError<S::Error>>
where
    S: BitsSink,
    B: Stream<Item = Result<Bytes, PayloadError>> + 'static,
{
    let boundary = boundary(headers).unwrap_or_default();
    if !(MIN_BOUNDARY..=MAX_BOUNDARY).contains(&boundary.len()) {
        return Err(FormError::Unreadable(format!(
            "the multipart boundary must have {MIN_BOUNDARY} to {MAX_BOUNDARY} characters"
        )));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let pulled = Arc::new(AtomicU64::new(0));
    let counted = body.inspect({
        let pulled = pulled.clone();
        move |chunk| {
            if let Ok(bytes) = chunk {
                pulled.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
        }
    });
    // What the bits will have at least: everything not read yet, less what may follow
    // them. The parser may hold some of their bytes already, which only lowers the bound.
    let bits_at_least = move || {
        declared.map_or(0, |declared| {
            declared
                .saturating_sub(pulled.load(Ordering::Relaxed))
                .saturating_sub(AFTER_BITS_ALLOWANCE)
        })
    };
    let mut multipart = Multipart::new(headers, with_trailer(counted, headers));
    let mut summary = MultipartSummary::default();
    let mut staged = None;
    // The parser has panicked on malformed input before (see MIN_BOUNDARY); should it do
    // so again, the request gets an error instead of taking its worker thread's task down.
    let reading = read_parts(
        &mut multipart,
        sink,
        &mut summary,
        &mut staged,
        &bits_at_least,
    );
    let outcome = match AssertUnwindSafe(reading).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(_) => Err(FormError::Unreadable(
            "the multipart form could not be parsed".to_owned(),
        )),
    };
    let outcome =
        outcome.and_then(|()| upload::multipart_resources(&summary).map_err(FormError::Invalid));
    match (outcome, staged) {
        (Ok(resources), bits) => Ok(Upload { bits, resources }),
        (Err(e), staged) => {
            if let Some(staged) = staged {
                sink.discard(staged).await;
            }
            Err(e)
        }
    }
}

async fn read_parts<S: BitsSink>(
    multipart: &mut Multipart,
    sink: &mut S,
    summary: &mut MultipartSummary,
    staged: &mut Option<S::Staged>,
    bits_at_least: &dyn Fn() -> u64,
) -> Result<(), FormError<S::Error>> {
    let mut parts = 0usize;
    let mut field_bytes = 0usize;
    let mut resources_bytes = 0usize;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|e| FormError::Unreadable(e.to_string()))?;
        parts += 1;
        if parts > MAX_PARTS {
            return Err(FormError::Invalid(Invalid::one(format!(
                "An upload may have at most {MAX_PARTS} parts"
            ))));
        }
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "bits" if staged.is_none() => {
                summary.has_bits = true;
                let at_least = bits_at_least();
                *staged = Some(
                    sink.ingest(&mut field, at_least)
                        .await
                        .map_err(FormError::Sink)?,
                );
            }
            "resources" => {
                let value = read_text(&mut field, &mut resources_bytes, MAX_RESOURCES_BYTES)
                    .await?
                    .ok_or(FormError::ResourcesTooLarge {
                        limit: MAX_RESOURCES_BYTES,
                    })?;
                summary.resources = Some(value);
            }
            other => {
                if !summary.unknown_fields.iter().any(|f| f == other) {
                    summary.unknown_fields.push(other.to_owned());
                }
                // Unknown parts are refused anyway; past the budget there is no point in
                // reading further.
                if read_text(&mut field, &mut field_bytes, MAX_FIELDS_BYTES)
                    .await?
                    .is_none()
                {
                    return upload::multipart(summary).map_err(FormError::Invalid);
                }
            }
        }
    }
    Ok(())
}

/// Shortest boundary taken. RFC 2046 allows one character, but actix-multipart 0.7 slices
/// out of bounds (a panic) on lines shorter than four bytes when the boundary is that
/// short; clients send long random boundaries anyway.
pub const MIN_BOUNDARY: usize = 4;
/// Longest boundary RFC 2046 allows.
pub const MAX_BOUNDARY: usize = 70;

/// The `boundary` parameter of the request's content type, unquoted.
fn boundary(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The body followed, once it has ended, by a line that cannot be part of a boundary.
///
/// actix-multipart 0.7 waits for more input, for ever, when a body ends a few bytes into
/// what might be a boundary (`…data\r\n` and nothing more): without this, such a body,
/// sent whole, would hold its request and connection open indefinitely. After a closing
/// boundary the trailer is never read; without one the form is reported incomplete.
fn with_trailer<B>(
    body: B,
    headers: &HeaderMap,
) -> impl Stream<Item = Result<Bytes, PayloadError>> + 'static
where
    B: Stream<Item = Result<Bytes, PayloadError>> + 'static,
{
    // Longer than any boundary the content type can name, so it cannot end in one.
    let content_type = headers.get(header::CONTENT_TYPE).map_or(0, |v| v.len());
    let mut trailer = b"\r\n".to_vec();
    trailer.resize(content_type + 8, b'X');
    body.chain(futures_util::stream::once(async move {
        Ok(Bytes::from(trailer))
    }))
}

/// Reads a text part within what is left of its budget; `None` when it does not fit (the
/// rest of the part is left unread).
async fn read_text<E>(
    field: &mut Field,
    used: &mut usize,
    budget: usize,
) -> Result<Option<String>, FormError<E>> {
    let mut value = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| FormError::Unreadable(e.to_string()))?;
        *used = used.saturating_add(chunk.len());
        if *used > budget {
            return Ok(None);
        }
        value.extend_from_slice(&chunk);
    }
    Ok(Some(String::from_utf8_lossy(&value).into_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    /// Counts the bits it is given.
    #[derive(Default)]
    struct Counting {
        discarded: usize,
        /// What `ingest` was told the bits have at least.
        at_least: Option<u64>,
    }

    impl BitsSink for Counting {
        type Staged = usize;
        type Error = String;

        async fn ingest(&mut self, field: &mut Field, at_least: u64) -> Result<usize, String> {
            self.at_least = Some(at_least);
            let mut n = 0;
            while let Some(chunk) = field.next().await {
                n += chunk.map_err(|e| e.to_string())?.len();
            }
            Ok(n)
        }

        async fn discard(&mut self, _: usize) {
            self.discarded += 1;
        }
    }

    fn headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=XBOUNDARY"),
        );
        headers
    }

    async fn read_form(
        body: Vec<u8>,
        sink: &mut Counting,
    ) -> Result<Upload<usize>, FormError<String>> {
        let stream = futures_util::stream::iter(
            body.chunks(1000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        read(&headers(), stream, sink).await
    }

    /// The size of the bits of a form that must have them.
    async fn read_all(body: Vec<u8>, sink: &mut Counting) -> Result<usize, FormError<String>> {
        read_form(body, sink)
            .await
            .map(|upload| upload.bits.expect("bits"))
    }

    fn part(name: &str, file: bool, data: &[u8]) -> Vec<u8> {
        let filename = if file { "; filename=\"a.zip\"" } else { "" };
        let mut out = format!(
            "--XBOUNDARY\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n"
        )
        .into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn form(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut body = parts.concat();
        body.extend_from_slice(b"--XBOUNDARY--\r\n");
        body
    }

    /// With a Content-Length the sink learns a lower bound of the bits that holds for
    /// every form that can be accepted; without one it learns nothing.
    #[tokio::test]
    async fn the_sink_is_told_what_the_bits_have_at_least() {
        let bits = vec![7u8; 12 << 20];
        let resources = format!("[{}]", vec!["{}"; 1000].join(","));
        for trailing in [Vec::new(), part("resources", false, resources.as_bytes())] {
            let body = form(&[part("bits", true, &bits), trailing]);
            let mut with_length = headers();
            with_length.insert(header::CONTENT_LENGTH, body.len().into());
            // Chunks that arrive one at a time, as from a socket: the parser reads what
            // has arrived, no further.
            let chunk = 64 * 1024;
            let stream = futures_util::stream::iter(
                body.chunks(chunk)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            )
            .then(|chunk| async {
                tokio::task::yield_now().await;
                chunk
            });
            let mut sink = Counting::default();
            let _ = read(&with_length, stream, &mut sink).await;
            let at_least = sink.at_least.unwrap();
            assert!(at_least <= bits.len() as u64, "{at_least}");
            // Off by no more than one chunk the parser read ahead, and the part's header.
            let lowest = bits.len() as u64 - AFTER_BITS_ALLOWANCE - chunk as u64 - 200;
            assert!(at_least >= lowest, "{at_least} < {lowest}");
        }
        let mut sink = Counting::default();
        read_all(form(&[part("bits", true, &bits)]), &mut sink)
            .await
            .unwrap();
        assert_eq!(sink.at_least, Some(0), "no Content-Length, no bound");
    }

    #[tokio::test]
    async fn bits_go_to_the_sink_and_empty_resources_pass() {
        let body = form(&[
            part("resources", false, b"[]"),
            part("bits", true, &[7; 5000]),
        ]);
        let mut sink = Counting::default();
        assert_eq!(read_all(body, &mut sink).await.unwrap(), 5000);
    }

    #[tokio::test]
    async fn an_unknown_part_is_refused_and_the_bits_discarded() {
        let body = form(&[part("bits", true, b"zip"), part("junk", false, b"x")]);
        let mut sink = Counting::default();
        match read_all(body, &mut sink).await {
            Err(FormError::Invalid(invalid)) => {
                assert_eq!(invalid.to_string(), "Unknown field(s): 'junk'");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(sink.discarded, 1);
    }

    #[tokio::test]
    async fn a_huge_junk_part_is_not_read_to_its_end() {
        // The form never ends: only the budget can stop the reading.
        let mut body = part("junk", false, &vec![b'j'; MAX_FIELDS_BYTES + 10]);
        body.truncate(body.len() - 2);
        let endless = futures_util::stream::iter(
            body.chunks(1000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )
        .chain(futures_util::stream::pending());
        let mut sink = Counting::default();
        match read(&headers(), endless, &mut sink).await {
            Err(FormError::Invalid(invalid)) => assert!(
                invalid.to_string().starts_with("Unknown field(s): 'junk'"),
                "{invalid}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bodies_that_end_inside_a_part_are_incomplete_not_stuck() {
        let whole = form(&[part("bits", true, b"abc")]);
        // Every cut of a form, however short, ends in an error or a result, never a hang.
        for cut in 0..whole.len() - 2 {
            let outcome = read_all(whole[..cut].to_vec(), &mut Counting::default()).await;
            assert!(outcome.is_err(), "cut at {cut}: {outcome:?}");
        }
        // The closing boundary without its line ending is still a whole form.
        let unended = whole[..whole.len() - 2].to_vec();
        assert_eq!(
            read_all(unended, &mut Counting::default()).await.unwrap(),
            3
        );
        assert_eq!(read_all(whole, &mut Counting::default()).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn short_boundaries_are_refused_before_parsing() {
        // Found by fuzzing: with a two-byte boundary, a short line panicked the parser.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=\"XB\""),
        );
        let body = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"--XB\rx\n\n--\n"))]);
        match read(&headers, body, &mut Counting::default()).await {
            Err(FormError::Unreadable(text)) => {
                assert_eq!(text, "the multipart boundary must have 4 to 70 characters");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn too_many_parts_are_refused() {
        let parts: Vec<Vec<u8>> = (0..=MAX_PARTS)
            .map(|_| part("resources", false, b"[]"))
            .collect();
        let mut sink = Counting::default();
        match read_all(form(&parts), &mut sink).await {
            Err(FormError::Invalid(invalid)) => {
                assert_eq!(invalid.to_string(), "An upload may have at most 64 parts");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn resources_parts_share_one_budget() {
        let half = vec![b' '; MAX_RESOURCES_BYTES / 2 + 1];
        let body = form(&[
            part("bits", true, b"zip"),
            part("resources", false, &half),
            part("resources", false, &half),
        ]);
        let mut sink = Counting::default();
        match read_all(body, &mut sink).await {
            Err(FormError::ResourcesTooLarge { limit }) => assert_eq!(limit, MAX_RESOURCES_BYTES),
            other => panic!("{other:?}"),
        }
        assert_eq!(sink.discarded, 1, "the staged bits are thrown away");
    }

    #[tokio::test]
    async fn resources_alone_are_an_upload_and_bits_are_optional() {
        let list = br#"[{"checksum": {"value": "a9993e364706816aba3e25717850c26c9cd0d89d"}, "size_in_bytes": 3, "path": "abc.txt", "mode": "644"}]"#;
        let upload = read_form(
            form(&[part("resources", false, list)]),
            &mut Counting::default(),
        )
        .await
        .unwrap();
        assert!(upload.bits.is_none());
        assert_eq!(upload.resources.len(), 1);
        let upload = read_form(
            form(&[part("bits", true, b"zip"), part("resources", false, list)]),
            &mut Counting::default(),
        )
        .await
        .unwrap();
        assert_eq!((upload.bits, upload.resources.len()), (Some(3), 1));
        for nothing in [
            form(&[part("resources", false, b"[]")]),
            form(&[part("resources", false, b" [ ] ")]),
        ] {
            match read_form(nothing, &mut Counting::default()).await {
                Err(FormError::Invalid(invalid)) => {
                    assert_eq!(invalid.to_string(), upload::BITS_OR_RESOURCES_REQUIRED);
                }
                other => panic!("{other:?}"),
            }
        }
        match read_form(
            form(&[part("resources", false, b"{}")]),
            &mut Counting::default(),
        )
        .await
        {
            Err(FormError::Invalid(invalid)) => {
                assert_eq!(invalid.to_string(), upload::RESOURCES_NOT_JSON);
            }
            other => panic!("{other:?}"),
        }
    }
}
