//! Rows as diesel reads them, and their conversion into domain types.

use diesel::prelude::*;
use packages_domain::context::{App, Organization, Role, RoleTarget, Space};
use packages_domain::{Package, Timestamp};

use crate::StorageError;
use crate::schema::{apps, organizations, packages, roles, spaces};

#[derive(Queryable, Selectable)]
#[diesel(table_name = packages)]
pub(crate) struct PackageRow {
    pub guid: String,
    pub app_guid: String,
    pub package_type: String,
    pub state: String,
    pub package_hash: Option<String>,
    pub sha256_checksum: Option<String>,
    pub error: Option<String>,
    pub url: Option<String>,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub docker_username: Option<String>,
    pub docker_password: Option<String>,
}

impl TryFrom<PackageRow> for Package {
    type Error = StorageError;
    fn try_from(row: PackageRow) -> Result<Self, StorageError> {
        let corrupt = |value: &str| {
            StorageError::Corrupt(format!("package {}: unknown value '{value}'", row.guid))
        };
        Ok(Package {
            package_type: row
                .package_type
                .parse()
                .map_err(|_| corrupt(&row.package_type))?,
            state: row.state.parse().map_err(|_| corrupt(&row.state))?,
            guid: row.guid.into(),
            app_guid: row.app_guid.into(),
            sha1: row.package_hash,
            sha256: row.sha256_checksum,
            error: row.error,
            url: row.url,
            created_at: Timestamp(row.created_at),
            updated_at: row.updated_at.map(Timestamp),
            docker_username: row.docker_username,
            docker_password: row.docker_password,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = organizations)]
pub(crate) struct OrganizationRow {
    pub guid: String,
    pub name: String,
    pub suspended: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<OrganizationRow> for Organization {
    fn from(r: OrganizationRow) -> Self {
        Organization {
            guid: r.guid.into(),
            name: r.name,
            suspended: r.suspended,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = spaces)]
pub(crate) struct SpaceRow {
    pub guid: String,
    pub name: String,
    pub organization_guid: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<SpaceRow> for Space {
    fn from(r: SpaceRow) -> Self {
        Space {
            guid: r.guid.into(),
            name: r.name,
            organization_guid: r.organization_guid.into(),
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = apps)]
pub(crate) struct AppRow {
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<AppRow> for App {
    fn from(r: AppRow) -> Self {
        App {
            guid: r.guid.into(),
            name: r.name,
            space_guid: r.space_guid.into(),
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = roles)]
pub(crate) struct RoleRow {
    pub guid: String,
    pub role_type: String,
    pub user_guid: String,
    pub space_guid: Option<String>,
    pub organization_guid: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<RoleRow> for Role {
    type Error = StorageError;
    fn try_from(r: RoleRow) -> Result<Self, StorageError> {
        let role_type = r
            .role_type
            .parse()
            .map_err(|e| StorageError::Corrupt(format!("role {}: {e}", r.guid)))?;
        let target = match (r.space_guid, r.organization_guid) {
            (Some(space), _) => RoleTarget::Space(space.into()),
            (None, Some(org)) => RoleTarget::Organization(org.into()),
            (None, None) => {
                return Err(StorageError::Corrupt(format!(
                    "role {} has no target",
                    r.guid
                )));
            }
        };
        Ok(Role {
            guid: r.guid,
            role_type,
            user_guid: r.user_guid,
            target,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}
