//! Organizations, spaces, roles and apps: the small GA-shaped surface that owns and
//! authorizes packages.

use packages_domain::ListQuery;
use packages_domain::Package;
use packages_domain::context::{self as rules, App, Organization, Role, RoleTarget, Space};
use packages_domain::validation::{self, Invalid};
use packages_domain::{Access, AppGuid, OrgGuid, Principal, SpaceGuid, Timestamp, new_guid};
use packages_storage::context::{self as store, Visibility};
use packages_storage::jobs::NewJob;
use packages_storage::{AnyConnection, StorageError};

use crate::lookup::{require_read_scope, require_write_role, require_write_scope};
use crate::{Page, Resource, Result, ServiceError, Services, jobs, list_query};

const INVALID_ORG_FOR_SPACE: &str =
    "Invalid organization. Ensure the organization exists and you have access to it.";
const INVALID_ORG_FOR_ROLE: &str =
    "Invalid organization. Ensure that the organization exists and you have access to it.";
const INVALID_SPACE: &str =
    "Invalid space. Ensure that the space exists and you have access to it.";

fn require_admin(principal: &Principal) -> Result<()> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::NotAuthorized)
    }
}

fn visibility(principal: &Principal) -> Visibility {
    if principal.is_admin() {
        Visibility::All
    } else {
        Visibility::User(principal.user_guid.clone())
    }
}

fn parse(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>> {
    validation::parse_object(body).map_err(|e| ServiceError::Unparsable(e.0))
}

/// A storage delete that cascades to packages, recording jobs that delete their bits.
type CascadingDelete =
    fn(&mut AnyConnection, &str, &dyn Fn(&Package) -> NewJob) -> Result<bool, StorageError>;

/// A storage list function: a page of what a visibility allows, and the total.
type Lister<T> =
    fn(&mut AnyConnection, &Visibility, &ListQuery) -> Result<(Vec<T>, u64), StorageError>;

/// What a refused insert means for the client, by the constraint that refused it.
struct Refusals {
    /// A unique key (a name or a role taken).
    conflict: ServiceError,
    /// A foreign key (the parent vanished since it was looked up).
    missing_parent: Option<ServiceError>,
}

impl Services {
    /// Stores a new row, turning key violations into the resource's own errors.
    async fn insert<T: Clone + Send + Sync + 'static>(
        &self,
        row: T,
        insert: fn(&mut AnyConnection, &T) -> Result<(), StorageError>,
        refusals: Refusals,
    ) -> Result<T> {
        let stored = row.clone();
        match self.db.run(move |conn| insert(conn, &stored)).await {
            Ok(()) => Ok(row),
            Err(StorageError::Conflict(_)) => Err(refusals.conflict),
            Err(StorageError::MissingParent(e)) => Err(refusals
                .missing_parent
                .unwrap_or_else(|| StorageError::MissingParent(e).into())),
            Err(e) => Err(e.into()),
        }
    }

    /// A row the caller may see, else `NotFound(missing)`: `find` looks it up, `reaches`
    /// decides for non-admins (both run in one database round trip).
    async fn visible<K, T, F, R>(
        &self,
        principal: &Principal,
        missing: Resource,
        key: K,
        find: F,
        reaches: R,
    ) -> Result<T>
    where
        K: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection, &K) -> Result<Option<T>, StorageError> + Send + 'static,
        R: FnOnce(&mut AnyConnection, &str, &T) -> Result<bool, StorageError> + Send + 'static,
    {
        let (user, admin) = (principal.user_guid.clone(), principal.is_admin());
        self.db
            .run(move |conn| {
                let Some(found) = find(conn, &key)? else {
                    return Ok(None);
                };
                let visible = admin || reaches(conn, &user, &found)?;
                Ok(visible.then_some(found))
            })
            .await?
            .ok_or(ServiceError::NotFound(missing))
    }

    /// A page of a list endpoint: read scope, the query's rules, then what the caller
    /// may see.
    async fn visible_page<T: Send + 'static>(
        &self,
        principal: &Principal,
        query: &[(String, String)],
        list: Lister<T>,
    ) -> Result<Page<T>> {
        require_read_scope(principal)?;
        let query = list_query(query)?;
        let visibility = visibility(principal);
        let (items, total) = self
            .db
            .run(move |conn| list(conn, &visibility, &query))
            .await?;
        Ok(Page::new(items, total, query))
    }

    /// Runs a delete that cascades to packages; their bits go through jobs recorded in
    /// the same transaction.
    async fn delete_cascading(
        &self,
        guid: String,
        request_id: &str,
        delete: CascadingDelete,
    ) -> Result<()> {
        let request_id = request_id.to_owned();
        self.db
            .run(move |conn| delete(conn, &guid, &|p| jobs::delete_bits(p, &request_id)))
            .await?;
        self.job_recorded();
        Ok(())
    }

    // Organizations

    pub async fn create_org(&self, principal: &Principal, body: &[u8]) -> Result<Organization> {
        require_write_scope(principal)?;
        require_admin(principal)?;
        let request = rules::org_create(&parse(body)?)?;
        let now = Timestamp::now();
        let org = Organization {
            guid: new_guid().into(),
            name: request.name,
            suspended: request.suspended,
            created_at: now,
            updated_at: now,
        };
        let conflict = Invalid::one(format!("Organization '{}' already exists.", org.name));
        let refusals = Refusals {
            conflict: conflict.into(),
            missing_parent: None,
        };
        self.insert(org, store::insert_org, refusals).await
    }

    async fn visible_org(&self, principal: &Principal, guid: &OrgGuid) -> Result<Organization> {
        self.visible(
            principal,
            Resource::Organization,
            guid.clone(),
            |conn, guid| store::find_org(conn, guid),
            |conn, user, org: &Organization| store::is_org_member(conn, user, &org.guid),
        )
        .await
    }

    pub async fn get_org(&self, principal: &Principal, guid: &OrgGuid) -> Result<Organization> {
        require_read_scope(principal)?;
        self.visible_org(principal, guid).await
    }

    pub async fn list_orgs(
        &self,
        principal: &Principal,
        query: &[(String, String)],
    ) -> Result<Page<Organization>> {
        self.visible_page(principal, query, store::list_orgs).await
    }

    /// Deletes the organization with everything in it; package bits go through jobs.
    pub async fn delete_org(
        &self,
        principal: &Principal,
        guid: &OrgGuid,
        request_id: &str,
    ) -> Result<()> {
        require_write_scope(principal)?;
        let org = self.visible_org(principal, guid).await?;
        require_admin(principal)?;
        self.delete_cascading(org.guid.into_string(), request_id, store::delete_org)
            .await
    }

    // Spaces

    pub async fn create_space(&self, principal: &Principal, body: &[u8]) -> Result<Space> {
        require_write_scope(principal)?;
        let request = rules::space_create(&parse(body)?)?;
        let org = match &request.organization_guid {
            Some(guid) => self
                .visible_org(principal, &guid.as_str().into())
                .await
                .ok(),
            None => None,
        };
        let Some(org) = org else {
            return Err(Invalid::one(INVALID_ORG_FOR_SPACE).into());
        };
        require_admin(principal)?;
        let now = Timestamp::now();
        let space = Space {
            guid: new_guid().into(),
            name: request.name,
            organization_guid: org.guid,
            created_at: now,
            updated_at: now,
        };
        let refusals = Refusals {
            conflict: Invalid::one("Name must be unique per organization").into(),
            missing_parent: Some(Invalid::one(INVALID_ORG_FOR_SPACE).into()),
        };
        self.insert(space, store::insert_space, refusals).await
    }

    async fn visible_space(&self, principal: &Principal, guid: &SpaceGuid) -> Result<Space> {
        self.visible(
            principal,
            Resource::Space,
            guid.clone(),
            |conn, guid| store::find_space(conn, guid),
            |conn, user, space: &Space| {
                let membership = store::membership(conn, user, &space.guid)?.unwrap_or_default();
                Ok(membership.org_manager || !membership.space_roles.is_empty())
            },
        )
        .await
    }

    pub async fn get_space(&self, principal: &Principal, guid: &SpaceGuid) -> Result<Space> {
        require_read_scope(principal)?;
        self.visible_space(principal, guid).await
    }

    pub async fn list_spaces(
        &self,
        principal: &Principal,
        query: &[(String, String)],
    ) -> Result<Page<Space>> {
        self.visible_page(principal, query, store::list_spaces)
            .await
    }

    pub async fn delete_space(
        &self,
        principal: &Principal,
        guid: &SpaceGuid,
        request_id: &str,
    ) -> Result<()> {
        require_write_scope(principal)?;
        let space = self.visible_space(principal, guid).await?;
        require_admin(principal)?;
        self.delete_cascading(space.guid.into_string(), request_id, store::delete_space)
            .await
    }

    // Roles

    pub async fn create_role(&self, principal: &Principal, body: &[u8]) -> Result<Role> {
        require_write_scope(principal)?;
        require_admin(principal)?;
        let request = rules::role_create(&parse(body)?)?;
        let target_name = match &request.target {
            RoleTarget::Space(guid) => match self.visible_space(principal, guid).await {
                Ok(space) => format!("space '{}'", space.name),
                Err(_) => return Err(Invalid::one(INVALID_SPACE).into()),
            },
            RoleTarget::Organization(guid) => match self.visible_org(principal, guid).await {
                Ok(org) => format!("organization '{}'", org.name),
                Err(_) => return Err(Invalid::one(INVALID_ORG_FOR_ROLE).into()),
            },
        };
        let now = Timestamp::now();
        let role = Role {
            guid: new_guid(),
            role_type: request.role_type,
            user_guid: request.user_guid,
            target: request.target,
            created_at: now,
            updated_at: now,
        };
        let conflict = Invalid::one(format!(
            "User '{}' already has '{}' role in {target_name}.",
            role.user_guid, role.role_type
        ));
        let refusals = Refusals {
            conflict: conflict.into(),
            missing_parent: None,
        };
        self.insert(role, store::insert_role, refusals).await
    }

    async fn visible_role(&self, principal: &Principal, guid: &str) -> Result<Role> {
        let role = self
            .db
            .run({
                let guid = guid.to_owned();
                move |conn| store::find_role(conn, &guid)
            })
            .await?
            .ok_or(ServiceError::NotFound(Resource::Role))?;
        let visible = principal.is_admin()
            || role.user_guid == principal.user_guid
            || match &role.target {
                RoleTarget::Space(space) => self.visible_space(principal, space).await.is_ok(),
                RoleTarget::Organization(org) => self.visible_org(principal, org).await.is_ok(),
            };
        if visible {
            Ok(role)
        } else {
            Err(ServiceError::NotFound(Resource::Role))
        }
    }

    pub async fn get_role(&self, principal: &Principal, guid: &str) -> Result<Role> {
        require_read_scope(principal)?;
        self.visible_role(principal, guid).await
    }

    pub async fn list_roles(
        &self,
        principal: &Principal,
        query: &[(String, String)],
    ) -> Result<Page<Role>> {
        self.visible_page(principal, query, store::list_roles).await
    }

    pub async fn delete_role(&self, principal: &Principal, guid: &str) -> Result<()> {
        require_write_scope(principal)?;
        let role = self.visible_role(principal, guid).await?;
        require_admin(principal)?;
        self.db
            .run(move |conn| store::delete_role(conn, &role.guid))
            .await?;
        Ok(())
    }

    // Apps

    pub async fn create_app(&self, principal: &Principal, body: &[u8]) -> Result<App> {
        require_write_scope(principal)?;
        let request = rules::app_create(&parse(body)?)?;
        let (user, space_guid) = (principal.user_guid.clone(), request.space_guid.clone());
        let found = match space_guid {
            Some(guid) => {
                self.db
                    .run(move |conn| {
                        let Some(space) = store::find_space(conn, &guid)? else {
                            return Ok(None);
                        };
                        let membership =
                            store::membership(conn, &user, &space.guid)?.unwrap_or_default();
                        Ok(Some((space, membership)))
                    })
                    .await?
            }
            None => None,
        };
        let Some((space, membership)) = found.filter(|(_, m)| {
            (Access {
                principal,
                membership: m,
            })
            .can_read()
        }) else {
            return Err(Invalid::one(INVALID_SPACE).into());
        };
        require_write_role(principal, &membership)?;
        let now = Timestamp::now();
        let app = App {
            guid: new_guid().into(),
            name: request.name,
            space_guid: space.guid,
            created_at: now,
            updated_at: now,
        };
        let refusals = Refusals {
            conflict: ServiceError::NotUnique(format!(
                "App with the name '{}' already exists.",
                app.name
            )),
            missing_parent: Some(Invalid::one(INVALID_SPACE).into()),
        };
        self.insert(app, store::insert_app, refusals).await
    }

    pub async fn get_app(&self, principal: &Principal, guid: &AppGuid) -> Result<App> {
        require_read_scope(principal)?;
        Ok(self.readable_app(principal, guid).await?.0)
    }

    pub async fn list_apps(
        &self,
        principal: &Principal,
        query: &[(String, String)],
    ) -> Result<Page<App>> {
        self.visible_page(principal, query, store::list_apps).await
    }

    /// Deletes the app and its packages; their bits go through jobs.
    pub async fn delete_app(
        &self,
        principal: &Principal,
        guid: &AppGuid,
        request_id: &str,
    ) -> Result<()> {
        require_write_scope(principal)?;
        let (app, membership) = self.readable_app(principal, guid).await?;
        require_write_role(principal, &membership)?;
        self.delete_cascading(app.guid.into_string(), request_id, store::delete_app)
            .await
    }
}

/// One of the context resources, as the API serves it: created from a JSON body, read,
/// listed and deleted, each with its own rules. Adding a resource is an implementation of
/// this (and a presenter), not another set of handlers.
pub trait ContextResource: Sized + Send + 'static {
    /// How a path names one.
    type Guid: serde::de::DeserializeOwned + Send + Sync + 'static;

    fn create(
        services: &Services,
        principal: &Principal,
        body: &[u8],
    ) -> impl std::future::Future<Output = Result<Self>> + Send;

    fn get(
        services: &Services,
        principal: &Principal,
        guid: &Self::Guid,
    ) -> impl std::future::Future<Output = Result<Self>> + Send;

    fn list(
        services: &Services,
        principal: &Principal,
        query: &[(String, String)],
    ) -> impl std::future::Future<Output = Result<Page<Self>>> + Send;

    fn delete(
        services: &Services,
        principal: &Principal,
        guid: &Self::Guid,
        request_id: &str,
    ) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// Implements [`ContextResource`] by naming the four use cases of a resource.
macro_rules! context_resource {
    ($resource:ty, $guid:ty, $create:ident, $get:ident, $list:ident, |$s:ident, $p:ident, $g:ident, $r:ident| $delete:expr) => {
        impl ContextResource for $resource {
            type Guid = $guid;

            async fn create(
                services: &Services,
                principal: &Principal,
                body: &[u8],
            ) -> Result<Self> {
                services.$create(principal, body).await
            }

            async fn get(services: &Services, principal: &Principal, guid: &$guid) -> Result<Self> {
                services.$get(principal, guid).await
            }

            async fn list(
                services: &Services,
                principal: &Principal,
                query: &[(String, String)],
            ) -> Result<Page<Self>> {
                services.$list(principal, query).await
            }

            async fn delete($s: &Services, $p: &Principal, $g: &$guid, $r: &str) -> Result<()> {
                $delete.await
            }
        }
    };
}

context_resource!(
    Organization,
    OrgGuid,
    create_org,
    get_org,
    list_orgs,
    |s, p, g, r| s.delete_org(p, g, r)
);
context_resource!(
    Space,
    SpaceGuid,
    create_space,
    get_space,
    list_spaces,
    |s, p, g, r| s.delete_space(p, g, r)
);
context_resource!(
    App,
    AppGuid,
    create_app,
    get_app,
    list_apps,
    |s, p, g, r| s.delete_app(p, g, r)
);
context_resource!(
    Role,
    String,
    create_role,
    get_role,
    list_roles,
    |s, p, g, _r| s.delete_role(p, g)
);
