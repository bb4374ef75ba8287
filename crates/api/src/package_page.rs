//! A list page of packages, streamed. A package may carry up to 200 annotations of 5,000
//! characters and a page up to 5,000 packages, so the body is written as it is rendered:
//! the page's metadata is loaded in batches of at most [`METADATA_BATCH_CHARACTERS`] (an
//! ordinary page's came with the page), and memory stays bounded by one batch whatever
//! the page holds. An ordinary page fits one write: it is rendered whole before the
//! status goes out and sent with its length, with no stream around it.

use std::collections::VecDeque;

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use packages_domain::{Metadata, Package};
use packages_service::Services;
use packages_service::packages::{
    METADATA_BATCH_CHARACTERS, PackageList, PackageView, PageMetadata,
};

use crate::presenters::{self, Links};
use crate::{ApiError, JSON_CONTENT_TYPE};

/// The body goes out in writes of about this size: a page is one write when it fits, so
/// no small trailing write waits on the client's delayed ACK.
const WRITE_BYTES: usize = 64 * 1024;

pub(crate) async fn response(
    links: Links,
    path: &str,
    list: PackageList,
    services: Services,
) -> Result<HttpResponse, ApiError> {
    let pagination = presenters::pagination(&links, path, &list.page);
    // Room for the first write, so that rendering it never copies what it has written.
    let mut head = Vec::with_capacity(WRITE_BYTES + WRITE_BYTES / 4);
    head.extend_from_slice(b"{\n  \"pagination\": ");
    head.extend(serde_json::to_vec_pretty(&pagination).unwrap_or_default());
    head.extend_from_slice(b",\n  \"resources\": [");
    let mut page = Page {
        links,
        services,
        packages: list.page.resources.into_iter().collect(),
        metadata: list.metadata,
        out: head,
        rendered: 0,
        done: false,
    };
    // Before the status: a failure here still answers with an error, not a cut body.
    let first = page.next_write().await?;
    let mut response = HttpResponse::Ok();
    response.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    ));
    Ok(if page.done {
        response.body(first)
    } else {
        response.streaming(stream::once(async { Ok(first) }).chain(body(page)))
    })
}

/// What is left to render of a page.
struct Page {
    links: Links,
    services: Services,
    packages: VecDeque<Package>,
    /// The metadata of `packages`, or its sizes to load it by.
    metadata: PageMetadata,
    /// Rendered and not yet sent.
    out: Vec<u8>,
    rendered: usize,
    done: bool,
}

/// The body, in writes of about [`WRITE_BYTES`]. A database failure mid-page ends the body
/// early: the status is already sent, and a client sees a truncated document rather than
/// a wrong one.
fn body(page: Page) -> impl Stream<Item = Result<Bytes, ApiError>> {
    stream::unfold(page, |mut page| async move {
        if page.done {
            return None;
        }
        let write = page.next_write().await;
        if write.is_err() {
            page.done = true;
        }
        Some((write, page))
    })
}

impl Page {
    /// Renders until about [`WRITE_BYTES`] are ready or the page ends, and takes them.
    async fn next_write(&mut self) -> Result<Bytes, ApiError> {
        loop {
            self.render_batch().await?;
            if self.packages.is_empty() {
                self.out.extend_from_slice(b"\n  ]\n}");
                self.done = true;
                return Ok(Bytes::from(std::mem::take(&mut self.out)));
            }
            if self.out.len() >= WRITE_BYTES {
                let room = Vec::with_capacity(WRITE_BYTES + WRITE_BYTES / 4);
                return Ok(Bytes::from(std::mem::replace(&mut self.out, room)));
            }
        }
    }

    /// Renders the next packages whose metadata fits [`BATCH_CHARACTERS`] together (at
    /// least one) into `out`.
    async fn render_batch(&mut self) -> Result<(), ApiError> {
        if self.packages.is_empty() {
            return Ok(());
        }
        let (batch, metadata): (Vec<Package>, Vec<Metadata>) = match &mut self.metadata {
            PageMetadata::Loaded(metadata) => {
                (self.packages.drain(..).collect(), std::mem::take(metadata))
            }
            PageMetadata::Sizes(sizes) => {
                let mut batch = Vec::new();
                let mut characters = 0u64;
                let mut taken = 0;
                for &size in sizes.iter() {
                    if !batch.is_empty()
                        && characters.saturating_add(size) > METADATA_BATCH_CHARACTERS
                    {
                        break;
                    }
                    characters = characters.saturating_add(size);
                    taken += 1;
                    batch.extend(self.packages.pop_front());
                }
                sizes.drain(..taken);
                let guids = batch.iter().map(|p| p.guid.clone()).collect();
                let metadata = self.services.metadata_of(guids).await?;
                (batch, metadata)
            }
        };
        for (package, metadata) in batch.into_iter().zip(metadata) {
            if self.rendered > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(b"\n    ");
            let view = PackageView { package, metadata };
            // Straight into the page's buffer.
            presenters::package(&self.links, &view).write_compact(&mut self.out);
            self.rendered += 1;
        }
        Ok(())
    }
}
