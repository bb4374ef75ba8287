//! The few requests `push` and `download` make, with Cloud Controller's error answers
//! turned into one-line errors. Bodies of bits stream from and to files.

use std::time::Duration;

use futures_util::TryStreamExt;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::progress::Transfer;
use crate::{ClientError, Target};

/// Bits are read from disk and sent in pieces of this size.
const CHUNK: usize = 256 * 1024;
/// Any request but those carrying bits (their length has no bound).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    target: Target,
}

/// A direct-upload link (`POST /v3/packages/:guid/direct_uploads`).
#[derive(Debug, Clone)]
pub struct DirectLink {
    pub upload_href: String,
    pub complete_href: String,
    pub max_size_in_bytes: Option<u64>,
}

impl Api {
    pub fn new(target: Target) -> Result<Api, ClientError> {
        let http = reqwest::Client::builder()
            // Redirects are followed by hand: a presigned URL must not get the token.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("packages/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Http {
                request: "cannot set up HTTP".into(),
                source,
            })?;
        Ok(Api { http, target })
    }

    pub fn base(&self) -> &str {
        &self.target.api
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.target.api)
    }

    async fn send(
        &self,
        request: &str,
        builder: reqwest::RequestBuilder,
    ) -> Result<Response, ClientError> {
        builder.send().await.map_err(|source| ClientError::Http {
            request: request.to_owned(),
            source,
        })
    }

    /// A JSON request with the token; the answer's JSON when its status is `expect`.
    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expect: StatusCode,
    ) -> Result<Value, ClientError> {
        let request = format!("{method} {path}");
        let mut builder = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.target.token)
            .timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let res = self.send(&request, builder).await?;
        read_json(&request, res, expect).await
    }

    /// `POST /v3/packages`: a new bits package for `app`.
    pub async fn create_package(&self, app: &str) -> Result<Value, ClientError> {
        let body = json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}});
        self.json(
            Method::POST,
            "/v3/packages",
            Some(&body),
            StatusCode::CREATED,
        )
        .await
    }

    pub async fn package(&self, guid: &str) -> Result<Value, ClientError> {
        self.json(
            Method::GET,
            &format!("/v3/packages/{guid}"),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// `POST /v3/resource_matches`: the fingerprints of `resources` the pool holds.
    pub async fn resource_matches(&self, resources: &[Value]) -> Result<Vec<Value>, ClientError> {
        let path = "/v3/resource_matches";
        let answer = self
            .json(
                Method::POST,
                path,
                Some(&json!({"resources": resources})),
                StatusCode::CREATED,
            )
            .await?;
        match answer.get("resources").and_then(Value::as_array) {
            Some(matched) => Ok(matched.clone()),
            None => Err(ClientError::Answer {
                request: format!("POST {path}"),
                detail: "no resources array".into(),
            }),
        }
    }

    /// The multipart upload: `resources` (when any) and the zip in `bits` (when given),
    /// streamed from the file.
    pub async fn upload(
        &self,
        guid: &str,
        resources: &[Value],
        bits: Option<(tokio::fs::File, u64, Transfer)>,
    ) -> Result<Value, ClientError> {
        let path = format!("/v3/packages/{guid}/upload");
        let request = format!("POST {path}");
        let mut form = reqwest::multipart::Form::new();
        if !resources.is_empty() {
            form = form.text("resources", Value::from(resources.to_vec()).to_string());
        }
        if let Some((file, len, progress)) = bits {
            let part = reqwest::multipart::Part::stream_with_length(counted(file, progress), len)
                .file_name("application.zip")
                .mime_str("application/zip")
                .map_err(|source| ClientError::Http {
                    request: request.clone(),
                    source,
                })?;
            form = form.part("bits", part);
        }
        let builder = self
            .http
            .post(self.url(&path))
            .bearer_auth(&self.target.token)
            .multipart(form);
        let res = self.send(&request, builder).await?;
        read_json(&request, res, StatusCode::OK).await
    }

    /// A direct-upload link, or `None` when the service offers none for this package
    /// (404: a service without the route; 422: one that cannot give one).
    pub async fn direct_link(&self, guid: &str) -> Result<Option<DirectLink>, ClientError> {
        let path = format!("/v3/packages/{guid}/direct_uploads");
        let request = format!("POST {path}");
        let builder = self
            .http
            .post(self.url(&path))
            .bearer_auth(&self.target.token)
            .timeout(REQUEST_TIMEOUT);
        let res = self.send(&request, builder).await?;
        if matches!(
            res.status(),
            StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY
        ) {
            // A 404 for the package itself shows again on the upload that follows.
            return Ok(None);
        }
        let link = read_json(&request, res, StatusCode::CREATED).await?;
        let href = |name: &str| {
            link["links"][name]["href"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ClientError::Answer {
                    request: request.clone(),
                    detail: format!("no links.{name}.href"),
                })
        };
        Ok(Some(DirectLink {
            upload_href: href("upload")?,
            complete_href: href("complete")?,
            max_size_in_bytes: link["max_size_in_bytes"].as_u64(),
        }))
    }

    /// PUTs the zip to the link's upload URL: no token, the link is the credential (and
    /// may point at an object store that would take a token for a foreign signature).
    pub async fn put_direct(
        &self,
        link: &DirectLink,
        file: tokio::fs::File,
        len: u64,
        progress: Transfer,
    ) -> Result<(), ClientError> {
        let request = "PUT to the direct-upload link".to_owned();
        // An explicit length: object stores refuse a chunked PUT.
        let builder = self
            .http
            .put(&link.upload_href)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(counted(file, progress));
        let res = self.send(&request, builder).await?;
        if res.status().is_success() {
            return Ok(());
        }
        Err(error_of(&request, res).await)
    }

    /// Completes a direct upload: the package goes to `PROCESSING_UPLOAD`.
    pub async fn complete_direct(&self, link: &DirectLink) -> Result<Value, ClientError> {
        let request = "POST to the direct-upload completion link".to_owned();
        let builder = self
            .http
            .post(&link.complete_href)
            .bearer_auth(&self.target.token)
            .timeout(REQUEST_TIMEOUT);
        let res = self.send(&request, builder).await?;
        read_json(&request, res, StatusCode::OK).await
    }

    /// The bits of a package: the service's own stream, or the presigned URL its `302`
    /// names, fetched without the token.
    pub async fn download(&self, guid: &str) -> Result<Response, ClientError> {
        let path = format!("/v3/packages/{guid}/download");
        let request = format!("GET {path}");
        let builder = self
            .http
            .get(self.url(&path))
            .bearer_auth(&self.target.token);
        let res = self.send(&request, builder).await?;
        let res = if res.status().is_redirection() {
            let location = res
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| ClientError::Answer {
                    request: request.clone(),
                    detail: format!("{} without a Location", res.status()),
                })?;
            let location = res.url().join(location).map_err(|e| ClientError::Answer {
                request: request.clone(),
                detail: format!("Location {location}: {e}"),
            })?;
            let request = "GET of the download link".to_owned();
            self.send(&request, self.http.get(location)).await?
        } else {
            res
        };
        if res.status() == StatusCode::OK {
            return Ok(res);
        }
        Err(error_of(&request, res).await)
    }
}

/// The file's bytes as a request body, counted into `progress` as they go.
fn counted(file: tokio::fs::File, progress: Transfer) -> reqwest::Body {
    let stream = tokio_util::io::ReaderStream::with_capacity(file, CHUNK)
        .inspect_ok(move |chunk| progress.inc(chunk.len() as u64));
    reqwest::Body::wrap_stream(stream)
}

async fn read_json(request: &str, res: Response, expect: StatusCode) -> Result<Value, ClientError> {
    if res.status() != expect {
        return Err(error_of(request, res).await);
    }
    res.json().await.map_err(|source| ClientError::Http {
        request: request.to_owned(),
        source,
    })
}

/// A failed answer as an error: Cloud Controller's `errors[0]` when the body has it,
/// else the start of the body.
async fn error_of(request: &str, res: Response) -> ClientError {
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    let first = parsed.as_ref().and_then(|v| v["errors"].get(0));
    let (title, detail) = match first {
        Some(e) => (
            e["title"].as_str().unwrap_or_default().to_owned(),
            e["detail"].as_str().unwrap_or_default().to_owned(),
        ),
        None => {
            let text: String = body.trim().chars().take(200).collect();
            (
                status.canonical_reason().unwrap_or_default().to_owned(),
                text,
            )
        }
    };
    ClientError::Api {
        request: request.to_owned(),
        status: status.as_u16(),
        title,
        detail,
    }
}
