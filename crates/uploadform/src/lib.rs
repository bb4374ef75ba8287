//! The multipart upload form: one `bits` file part, streamed to a sink, and small text
//! parts (`resources`, or unknown ones to report). Everything but the bits is bounded:
//! at most [`MAX_PARTS`] parts and [`MAX_FIELDS_BYTES`] bytes of them all together, so a
//! client cannot make the service read gigabytes of junk before it answers 422.

use std::future::Future;

use actix_multipart::{Field, Multipart};
use futures_util::StreamExt;
use packages_domain::upload::{self, MultipartSummary};
use packages_domain::validation::Invalid;
use packages_service::ServiceError;

/// Most parts a form may have (clients send one or two).
pub const MAX_PARTS: usize = 64;
/// Most bytes of all the parts other than `bits` together (`resources` lists included).
pub const MAX_FIELDS_BYTES: usize = 1 << 20;

/// Where the `bits` part goes.
pub trait BitsSink {
    type Staged;

    /// Consumes the part's bytes; what it returns is handed back on success.
    fn ingest(
        &mut self,
        field: &mut Field,
    ) -> impl Future<Output = Result<Self::Staged, ServiceError>>;

    /// Throws away what `ingest` stored when the form as a whole is refused.
    fn discard(&mut self, staged: Self::Staged) -> impl Future<Output = ()>;
}

/// Why a form was refused.
#[derive(Debug)]
pub enum FormError {
    /// The form broke a rule (422).
    Invalid(Invalid),
    /// The body could not be read as a form (400), or stopped arriving.
    Unreadable(String),
    /// Storing the bits failed, or they were too large.
    Service(ServiceError),
}

impl From<ServiceError> for FormError {
    fn from(e: ServiceError) -> Self {
        FormError::Service(e)
    }
}

/// Reads every part; the bits go to `sink`, the rest is checked once all were seen.
pub async fn read<S: BitsSink>(
    mut multipart: Multipart,
    sink: &mut S,
) -> Result<S::Staged, FormError> {
    let mut summary = MultipartSummary::default();
    let mut staged = None;
    let outcome = read_parts(&mut multipart, sink, &mut summary, &mut staged).await;
    let outcome = outcome.and_then(|()| upload::multipart(&summary).map_err(FormError::Invalid));
    match (outcome, staged) {
        (Ok(()), Some(staged)) => Ok(staged),
        (Ok(()), None) => Err(FormError::Invalid(Invalid::one(
            upload::BITS_OR_RESOURCES_REQUIRED,
        ))),
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
) -> Result<(), FormError> {
    let mut parts = 0usize;
    let mut field_bytes = 0usize;
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
                *staged = Some(sink.ingest(&mut field).await?);
            }
            "resources" => {
                let value = read_text(&mut field, &mut field_bytes)
                    .await?
                    .ok_or_else(|| FormError::Invalid(Invalid::one(upload::RESOURCES_NOT_JSON)))?;
                summary.resources = Some(value);
            }
            other => {
                if !summary.unknown_fields.iter().any(|f| f == other) {
                    summary.unknown_fields.push(other.to_owned());
                }
                // Unknown parts are refused anyway; past the budget there is no point in
                // reading further.
                if read_text(&mut field, &mut field_bytes).await?.is_none() {
                    return upload::multipart(summary).map_err(FormError::Invalid);
                }
            }
        }
    }
    Ok(())
}

/// Reads a text part within what is left of the fields' budget; `None` when it does not
/// fit (the rest of the part is left unread).
async fn read_text(field: &mut Field, used: &mut usize) -> Result<Option<String>, FormError> {
    let mut value = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| FormError::Unreadable(e.to_string()))?;
        *used = used.saturating_add(chunk.len());
        if *used > MAX_FIELDS_BYTES {
            return Ok(None);
        }
        value.extend_from_slice(&chunk);
    }
    Ok(Some(String::from_utf8_lossy(&value).into_owned()))
}
