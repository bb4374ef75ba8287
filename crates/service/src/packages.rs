//! Package use cases: create, copy, show, list, download, delete, stage.

use packages_blobstore::{BlobError, Download};
use packages_domain::validation::{self, Invalid};
use packages_domain::{
    AppGuid, NewPackage, Package, PackageFilter, PackageGuid, PackageState, PackageType, Principal,
    Timestamp, new_guid,
};
use packages_storage::context::Visibility;
use packages_storage::packages;

use crate::lookup::{require_read_scope, require_write_role, require_write_scope};
use crate::{Page, Resource, Result, ServiceError, Services, jobs, list_query};

pub const SAME_APP: &str = "Source and destination app cannot be the same";
pub const NOT_BITS: &str = "Package type must be bits.";
pub const NO_BITS: &str = "Package has no bits to download.";

fn visibility(principal: &Principal) -> Visibility {
    if principal.is_admin() {
        Visibility::All
    } else {
        Visibility::User(principal.user_guid.clone())
    }
}

impl Services {
    /// `POST /v3/apps/:guid/packages`.
    pub async fn create_package(
        &self,
        principal: &Principal,
        app_guid: &AppGuid,
        body: &[u8],
    ) -> Result<Package> {
        require_write_scope(principal)?;
        let body = validation::parse_object(body).map_err(|e| ServiceError::Unparsable(e.0))?;
        let request = validation::package_create(app_guid, &body)?;
        let (app, membership) = self.readable_app(principal, app_guid).await?;
        require_write_role(principal, &membership)?;
        let new = NewPackage {
            guid: new_guid().into(),
            app_guid: app.guid,
            package_type: request.package_type,
            state: PackageState::initial(request.package_type),
            url: request.url,
            created_at: Timestamp::now(),
            docker_username: None,
            docker_password: None,
        };
        Ok(self
            .db
            .run(move |conn| packages::insert(conn, &new))
            .await?)
    }

    /// `POST /v3/apps/:guid/packages?source_package_guid=`: the copy starts COPYING and a
    /// job copies the bits (docker packages are READY at once).
    pub async fn copy_package(
        &self,
        principal: &Principal,
        app_guid: &AppGuid,
        source_guid: &PackageGuid,
        request_id: &str,
    ) -> Result<Package> {
        require_write_scope(principal)?;
        let (app, app_membership) = self.readable_app(principal, app_guid).await?;
        require_write_role(principal, &app_membership)?;
        let (source, source_membership) = self.readable_package(principal, source_guid).await?;
        require_write_role(principal, &source_membership)?;
        if source.app_guid == app.guid {
            return Err(Invalid::one(SAME_APP).into());
        }
        let new = NewPackage {
            guid: new_guid().into(),
            app_guid: app.guid,
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
        Ok(package)
    }

    /// `GET /v3/packages/:guid`.
    pub async fn get_package(&self, principal: &Principal, guid: &PackageGuid) -> Result<Package> {
        require_read_scope(principal)?;
        Ok(self.readable_package(principal, guid).await?.0)
    }

    /// `GET /v3/packages` and `GET /v3/apps/:guid/packages`.
    pub async fn list_packages(
        &self,
        principal: &Principal,
        app_guid: Option<&AppGuid>,
        query: &[(String, String)],
    ) -> Result<Page<Package>> {
        require_read_scope(principal)?;
        let query = list_query(query)?;
        let app = match app_guid {
            Some(guid) => Some(self.readable_app(principal, guid).await?.0.guid),
            None => None,
        };
        let visibility = visibility(principal);
        let (resources, total) = self
            .db
            .run(move |conn| {
                packages::list(
                    conn,
                    &visibility,
                    app.as_deref(),
                    &PackageFilter::default(),
                    None,
                    &query,
                )
            })
            .await?;
        Ok(Page::new(resources, total, query))
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
