//! A list page of packages, streamed. A package may carry up to 200 annotations of 5,000
//! characters and a page up to 5,000 packages, so the body is written as it is rendered:
//! the metadata of [`CHUNK`] packages at a time is loaded, rendered and sent, and memory
//! stays bounded by one chunk whatever the page holds.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use packages_domain::Package;
use packages_service::Services;
use packages_service::packages::{PackageList, PackageView};

use crate::presenters::{self, Links};
use crate::{ApiError, JSON_CONTENT_TYPE};

/// Packages whose metadata is loaded and rendered together: up to about 1 MB each. At 10
/// a 60 MB page grew the process by 66 MiB (freed small strings stay in per-thread
/// arenas); at 2, by 8 MiB.
const CHUNK: usize = 2;

pub(crate) fn response(
    links: Links,
    path: &str,
    list: PackageList,
    services: Services,
) -> HttpResponse {
    let pagination = presenters::pagination(&links, path, &list.page);
    let mut head = b"{\n  \"pagination\": ".to_vec();
    head.extend(serde_json::to_vec_pretty(&pagination).unwrap_or_default());
    head.extend_from_slice(b",\n  \"resources\": [");
    let chunks: Vec<Vec<Package>> = list
        .page
        .resources
        .chunks(CHUNK)
        .map(<[Package]>::to_vec)
        .collect();
    let body = stream::once(async move { Ok::<_, ApiError>(Bytes::from(head)) })
        .chain(resources(links, services, chunks))
        .chain(stream::once(async { Ok(Bytes::from_static(b"\n  ]\n}")) }));
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        ))
        .streaming(body)
}

/// The rendered resources, chunk by chunk, separated by commas. A database failure
/// mid-page ends the body early: the status is already sent, and a client sees a
/// truncated document rather than a wrong one.
fn resources(
    links: Links,
    services: Services,
    chunks: Vec<Vec<Package>>,
) -> impl Stream<Item = Result<Bytes, ApiError>> {
    stream::iter(chunks.into_iter().enumerate()).then(move |(index, packages)| {
        let (links, services) = (links.clone(), services.clone());
        async move {
            let guids = packages.iter().map(|p| p.guid.clone()).collect();
            let metadata = services.metadata_of(guids).await.map_err(ApiError::from)?;
            let mut out = Vec::new();
            for (i, (package, metadata)) in packages.into_iter().zip(metadata).enumerate() {
                if index > 0 || i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"\n    ");
                let view = PackageView { package, metadata };
                out.extend(
                    serde_json::to_vec(&presenters::package(&links, &view)).unwrap_or_default(),
                );
            }
            Ok(Bytes::from(out))
        }
    })
}
