//! Package use cases, in both dialects: create, copy, show, list, update (GA), download,
//! delete, stage, and the droplets of a package (GA).

use std::convert::Infallible;
use std::ops::Deref;

use packages_blobstore::{BlobError, Download};
use packages_domain::ga::{self, APP_INVALID, SOURCE_PACKAGE_INVALID};
use packages_domain::list::{DropletListQuery, ListRoute};
use packages_domain::validation::{self, Invalid};
use packages_domain::{
    AppGuid, Metadata, MetadataUpdate, NewPackage, Package, PackageGuid, PackageListQuery,
    PackageState, PackageType, Principal, Timestamp, new_guid,
};
use packages_storage::context::Visibility;
use packages_storage::{metadata, packages, write_transaction};

use crate::lookup::{require_read_scope, require_write_role, require_write_scope};
use crate::{Page, Resource, Result, ServiceError, Services, jobs};

pub const SAME_APP: &str = "Source and destination app cannot be the same";
pub const NOT_BITS: &str = "Package type must be bits.";
pub const NO_BITS: &str = "Package has no bits to download.";

/// A package as the API shows it: the stored row and its labels and annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageView {
    pub package: Package,
    pub metadata: Metadata,
}

impl Deref for PackageView {
    type Target = Package;

    fn deref(&self) -> &Package {
        &self.package
    }
}

/// A page of packages, their metadata as far as it came with them, and the app the list
/// is nested under (the route's, or `/v3/packages?app_guid=`), which its links name.
#[derive(Debug, Clone)]
pub struct PackageList {
    pub page: Page<Package>,
    pub metadata: PageMetadata,
    pub app_guid: Option<AppGuid>,
}

/// Metadata characters (keys and values) loaded and rendered together. Packages of
/// ordinary metadata fill a page in one batch; packages of ~1 MB metadata go one at a
/// time. At 10 such packages a batch, a 60 MB page grew the process by 66 MiB (freed
/// small strings stay in per-thread arenas).
pub const METADATA_BATCH_CHARACTERS: u64 = 256 * 1024;

/// The metadata of a page's packages, in the page's order.
#[derive(Debug, Clone)]
pub enum PageMetadata {
    /// All of it: it fits one batch, so it came in the same trip to the database as the
    /// page (an ordinary page).
    Loaded(Vec<Metadata>),
    /// How large each package's is, to load it in batches of at most
    /// [`METADATA_BATCH_CHARACTERS`] with [`Services::metadata_of`].
    Sizes(Vec<u64>),
}

/// What a new package is made of, however it was asked for.
struct Creation {
    app_guid: AppGuid,
    package_type: PackageType,
    url: Option<String>,
    docker_username: Option<String>,
    docker_password: Option<String>,
    metadata: MetadataUpdate,
}

fn visibility(principal: &Principal) -> Visibility {
    if principal.is_admin() {
        Visibility::All
    } else {
        Visibility::User(principal.user_guid.clone())
    }
}

fn parse_body(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>> {
    validation::parse_object(body).map_err(|e| ServiceError::Unparsable(e.0))
}

fn parse_ga_body(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>> {
    validation::parse_ga_object(body).map_err(|e| ServiceError::Unparsable(e.0))
}

/// A lookup that misses is a 422 with `text` (GA create and copy), not a 404.
fn invalid_if_missing<T>(found: Result<T>, text: &str) -> Result<T> {
    match found {
        Err(ServiceError::NotFound(_)) => Err(Invalid::one(text).into()),
        other => other,
    }
}

impl Services {
    /// `POST /v3/apps/:guid/packages` (E2015).
    pub async fn create_package(
        &self,
        principal: &Principal,
        app_guid: &AppGuid,
        body: &[u8],
    ) -> Result<PackageView> {
        require_write_scope(principal)?;
        let body = parse_body(body)?;
        let request = validation::package_create(app_guid, &body)?;
        let (app, membership) = self.readable_app(principal, app_guid).await?;
        require_write_role(principal, &membership)?;
        self.create(Creation {
            app_guid: app.guid,
            package_type: request.package_type,
            url: request.url,
            docker_username: None,
            docker_password: None,
            metadata: MetadataUpdate::default(),
        })
        .await
    }

    /// `POST /v3/packages` (GA): the app comes from the body, and one the caller cannot
    /// see is a 422, not a 404.
    pub async fn create_package_ga(
        &self,
        principal: &Principal,
        body: &[u8],
    ) -> Result<PackageView> {
        require_write_scope(principal)?;
        let request = ga::parse_create(&parse_ga_body(body)?)?;
        let app_guid = AppGuid::from(request.app_guid.unwrap_or_default());
        let (app, membership) =
            invalid_if_missing(self.readable_app(principal, &app_guid).await, APP_INVALID)?;
        require_write_role(principal, &membership)?;
        let docker = request.docker.unwrap_or_else(|| ga::DockerData {
            image: String::new(),
            username: None,
            password: None,
        });
        ga::check_password(
            docker.password.as_deref(),
            self.policy.credential_key.is_some(),
        )?;
        self.create(Creation {
            app_guid: app.guid,
            package_type: request.package_type,
            url: (request.package_type == PackageType::Docker).then_some(docker.image),
            docker_username: docker.username,
            docker_password: docker.password,
            metadata: request.metadata,
        })
        .await
    }

    /// Stores a new package and its metadata together; a password is sealed first.
    async fn create(&self, creation: Creation) -> Result<PackageView> {
        let metadata = creation.metadata.apply(&Metadata::default())?;
        let guid = PackageGuid::from(new_guid());
        let docker_password = match &creation.docker_password {
            Some(password) => Some(self.seal(&guid, password)?),
            None => None,
        };
        let new = NewPackage {
            guid,
            app_guid: creation.app_guid,
            package_type: creation.package_type,
            state: PackageState::initial(creation.package_type),
            url: creation.url,
            created_at: Timestamp::now(),
            docker_username: creation.docker_username,
            docker_password,
        };
        let stored = metadata.clone();
        let package = self
            .db
            .run(move |conn| {
                write_transaction(conn, |conn| {
                    let package = packages::insert(conn, &new)?;
                    if !stored.is_empty() {
                        metadata::save(conn, &package.guid, &stored)?;
                    }
                    Ok(package)
                })
            })
            .await?;
        Ok(PackageView { package, metadata })
    }

    fn seal(&self, guid: &PackageGuid, password: &str) -> Result<String> {
        let key = self
            .policy
            .credential_key
            .as_ref()
            .ok_or_else(|| Invalid::one(ga::NO_ENCRYPTION_KEY))?;
        key.seal(guid, password).map_err(ServiceError::Credentials)
    }

    /// `POST /v3/apps/:guid/packages?source_package_guid=` (E2015): the copy starts
    /// COPYING and a job copies the bits (docker packages are READY at once).
    pub async fn copy_package(
        &self,
        principal: &Principal,
        app_guid: &AppGuid,
        source_guid: &PackageGuid,
        request_id: &str,
    ) -> Result<PackageView> {
        require_write_scope(principal)?;
        let (app, app_membership) = self.readable_app(principal, app_guid).await?;
        require_write_role(principal, &app_membership)?;
        let (source, source_membership) = self.readable_package(principal, source_guid).await?;
        require_write_role(principal, &source_membership)?;
        self.copy(app.guid, source, request_id).await
    }

    /// `POST /v3/packages?source_guid=` (GA): the destination app comes from the body;
    /// an app or source the caller cannot see is a 422, not a 404.
    pub async fn copy_package_ga(
        &self,
        principal: &Principal,
        source_guid: &PackageGuid,
        body: &[u8],
        request_id: &str,
    ) -> Result<PackageView> {
        require_write_scope(principal)?;
        let app_guid = AppGuid::from(ga::copy_app_guid(&parse_ga_body(body)?).unwrap_or_default());
        let (app, app_membership) =
            invalid_if_missing(self.readable_app(principal, &app_guid).await, APP_INVALID)?;
        require_write_role(principal, &app_membership)?;
        let (source, source_membership) = invalid_if_missing(
            self.readable_package(principal, source_guid).await,
            SOURCE_PACKAGE_INVALID,
        )?;
        require_write_role(principal, &source_membership)?;
        self.copy(app.guid, source, request_id).await
    }

    /// A copy of `source` for `app_guid`: no credentials, no labels or annotations.
    async fn copy(
        &self,
        app_guid: AppGuid,
        source: Package,
        request_id: &str,
    ) -> Result<PackageView> {
        if source.app_guid == app_guid {
            return Err(Invalid::one(SAME_APP).into());
        }
        let new = NewPackage {
            guid: new_guid().into(),
            app_guid,
            package_type: source.package_type,
            state: PackageState::initial_for_copy(source.package_type),
            url: source.url.clone(),
            created_at: Timestamp::now(),
            // A copy starts without the source's registry credentials (spec 4).
            docker_username: None,
            docker_password: None,
        };
        let job = (source.package_type == PackageType::Bits)
            .then(|| jobs::copy_bits(&new.guid, request_id, &source.guid));
        let has_job = job.is_some();
        let package = self
            .db
            .run(move |conn| packages::insert_with_job(conn, &new, job.as_ref()))
            .await?;
        if has_job {
            self.job_recorded();
        }
        Ok(PackageView {
            package,
            metadata: Metadata::default(),
        })
    }

    /// `PATCH /v3/packages/:guid` (GA): labels and annotations merged, registry
    /// credentials replaced, in one transaction.
    pub async fn update_package(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
        body: &[u8],
    ) -> Result<PackageView> {
        require_write_scope(principal)?;
        let request = ga::parse_update(&parse_ga_body(body)?)?;
        let (package, membership) = self.readable_package(principal, guid).await?;
        // Cloud Controller refuses credentials for bits before it checks the role.
        if package.package_type == PackageType::Bits && request.changes_credentials() {
            return Err(Invalid::one(ga::CREDENTIALS_FOR_BITS).into());
        }
        require_write_role(principal, &membership)?;
        ga::check_password(
            request.password.as_deref(),
            self.policy.credential_key.is_some(),
        )?;
        let sealed = match &request.password {
            Some(password) => Some(self.seal(&package.guid, password)?),
            None => None,
        };
        let (guid, update, username) = (package.guid.clone(), request.metadata, request.username);
        let updated = self
            .db
            .run(move |conn| {
                write_transaction(conn, |conn| {
                    let current = metadata::load(conn, &guid)?;
                    let merged = match update.apply(&current) {
                        Ok(merged) => merged,
                        // Nothing written yet: the empty transaction changes nothing.
                        Err(limit) => return Ok(Err(limit)),
                    };
                    if merged != current {
                        metadata::save(conn, &guid, &merged)?;
                    }
                    packages::set_docker_credentials(
                        conn,
                        &guid,
                        username.as_deref(),
                        sealed.as_deref(),
                    )?;
                    Ok(Ok(
                        packages::find(conn, &guid)?.map(|package| (package, merged))
                    ))
                })
            })
            .await?;
        match updated? {
            Some((package, metadata)) => Ok(PackageView { package, metadata }),
            None => Err(ServiceError::NotFound(Resource::Package)),
        }
    }

    /// `GET /v3/packages/:guid`.
    pub async fn get_package(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
    ) -> Result<PackageView> {
        require_read_scope(principal)?;
        Ok(self.readable_package_view(principal, guid).await?.0)
    }

    /// `GET /v3/packages` and `GET /v3/apps/:guid/packages`, with GA's filters and
    /// ordering, all applied by the database within what the caller may see. The page's
    /// metadata comes along when it fits one batch; otherwise only its sizes do (a package
    /// may carry megabytes of annotations), and the caller loads it a few packages at a
    /// time with [`Services::metadata_of`] while it writes the page out.
    pub async fn list_packages(
        &self,
        principal: &Principal,
        app_guid: Option<&AppGuid>,
        query: &[(String, String)],
    ) -> Result<PackageList> {
        require_read_scope(principal)?;
        let route = if app_guid.is_some() {
            ListRoute::AppPackages
        } else {
            ListRoute::AllPackages
        };
        let query = PackageListQuery::parse(query, route).map_err(ServiceError::BadQuery)?;
        // `/v3/packages?app_guid=G` answers as `/v3/apps/G/packages` does.
        let nested = app_guid
            .cloned()
            .or_else(|| query.app_guid.clone().map(AppGuid::from));
        let app = match &nested {
            Some(guid) => Some(self.readable_app(principal, guid).await?.0.guid),
            None => None,
        };
        let visibility = visibility(principal);
        let (filter, order_by, paging) = (query.filter.clone(), query.order_by, query.page);
        // The page and what it takes to show it in one trip to the database.
        let (packages, total, metadata) = self
            .db
            .run(move |conn| {
                let listed = packages::list(
                    conn,
                    &visibility,
                    app.as_deref(),
                    &filter,
                    order_by,
                    &paging,
                )?;
                let sizes = listed.metadata_sizes;
                let metadata = if sizes.iter().all(|&size| size == 0) {
                    PageMetadata::Loaded(vec![Metadata::default(); sizes.len()])
                } else if sizes.iter().sum::<u64>() <= METADATA_BATCH_CHARACTERS {
                    let guids: Vec<&str> =
                        listed.packages.iter().map(|p| p.guid.as_str()).collect();
                    PageMetadata::Loaded(metadata::load_many(conn, &guids)?)
                } else {
                    PageMetadata::Sizes(sizes)
                };
                Ok((listed.packages, listed.total, metadata))
            })
            .await?;
        Ok(PackageList {
            page: Page::new(packages, total, query.page).echoing(query.echo),
            metadata,
            app_guid: nested,
        })
    }

    /// The labels and annotations of these packages, in order, in one query.
    pub async fn metadata_of(&self, guids: Vec<PackageGuid>) -> Result<Vec<Metadata>> {
        Ok(self
            .db
            .run(move |conn| {
                let guids: Vec<&str> = guids.iter().map(|g| g.as_str()).collect();
                metadata::load_many(conn, &guids)
            })
            .await?)
    }

    /// `GET /v3/packages/:guid/droplets` (GA): staging is not this service's job, so a
    /// package never has droplets; the query and the package are checked as Cloud
    /// Controller checks them.
    pub async fn package_droplets(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
        query: &[(String, String)],
    ) -> Result<Page<Infallible>> {
        require_read_scope(principal)?;
        let query = DropletListQuery::parse(query).map_err(ServiceError::BadQuery)?;
        self.readable_package(principal, guid).await?;
        Ok(Page::new(Vec::new(), 0, query.page).echoing(query.echo))
    }

    /// `GET /v3/packages/:guid/download`.
    pub async fn download_package(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
    ) -> Result<Download> {
        require_read_scope(principal)?;
        let (package, _) = self.readable_package(principal, guid).await?;
        if package.package_type != PackageType::Bits {
            return Err(Invalid::one(NOT_BITS).into());
        }
        if package.state != PackageState::Ready {
            return Err(Invalid::one(NO_BITS).into());
        }
        match self.blobs.download(&package.blob_key()).await {
            Ok(download) => Ok(download),
            Err(source @ BlobError::NotFound(_)) => Err(ServiceError::MissingBits {
                guid: guid.clone(),
                source,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE /v3/packages/:guid`: the row goes at once, the bits through a job.
    pub async fn delete_package(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
        request_id: &str,
    ) -> Result<()> {
        require_write_scope(principal)?;
        let (package, membership) = self.readable_package(principal, guid).await?;
        require_write_role(principal, &membership)?;
        let request_id = request_id.to_owned();
        let deleted = self
            .db
            .run(move |conn| {
                packages::delete(conn, &package.guid, |p| jobs::delete_bits(p, &request_id))
            })
            .await?;
        if !deleted {
            return Err(ServiceError::NotFound(Resource::Package));
        }
        self.job_recorded();
        Ok(())
    }

    /// `POST /v3/packages/:guid/droplets`: checked like Cloud Controller, then refused;
    /// the error says which check stopped it.
    pub async fn stage_package(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
        body: &[u8],
    ) -> ServiceError {
        let checks = async {
            require_write_scope(principal)?;
            if !body.iter().all(u8::is_ascii_whitespace) {
                validation::parse_object(body).map_err(|e| ServiceError::Unparsable(e.0))?;
            }
            let (_, membership) = self.readable_package(principal, guid).await?;
            require_write_role(principal, &membership)
        };
        match checks.await {
            Ok(()) => ServiceError::StagingNotOffered,
            Err(e) => e,
        }
    }
}
