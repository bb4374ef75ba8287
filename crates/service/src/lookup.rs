//! Lookups with access decisions, in Cloud Controller's order: a resource the caller
//! cannot read is reported as missing.

use packages_domain::access::Membership;
use packages_domain::context::App;
use packages_domain::{Access, AppGuid, Package, PackageGuid, Principal, SpaceGuid};
use packages_storage::batch::Batched;
use packages_storage::packages;
use packages_storage::{AnyConnection, Database, StorageError, context};

use crate::packages::PackageView;

use crate::{Resource, Result, ServiceError, Services};

pub(crate) fn require_read_scope(principal: &Principal) -> Result<()> {
    if principal.may_read() {
        Ok(())
    } else {
        Err(ServiceError::NotAuthorized)
    }
}

pub(crate) fn require_write_scope(principal: &Principal) -> Result<()> {
    if principal.may_write() {
        Ok(())
    } else {
        Err(ServiceError::NotAuthorized)
    }
}

pub(crate) fn require_write_role(principal: &Principal, membership: &Membership) -> Result<()> {
    if (Access {
        principal,
        membership,
    })
    .can_write()
    {
        Ok(())
    } else {
        Err(ServiceError::NotAuthorized)
    }
}

fn readable(principal: &Principal, membership: &Membership) -> bool {
    (Access {
        principal,
        membership,
    })
    .can_read()
}

/// A package asked for by a caller: by an admin (`user` `None`, who sees every space), or
/// by a user whose roles in the package's space decide.
pub(crate) struct PackageRead {
    guid: PackageGuid,
    user: Option<String>,
}

pub(crate) type PackageReads = Batched<PackageRead, Option<(PackageView, Membership)>>;

pub(crate) fn package_reads(db: &Database) -> PackageReads {
    Batched::new(db.clone(), read_packages)
}

/// The packages, each with what its caller holds in its space, in one statement for the
/// packages and one lookup per caller and space.
fn read_packages(
    conn: &mut AnyConnection,
    reads: &[PackageRead],
) -> std::result::Result<Vec<Option<(PackageView, Membership)>>, StorageError> {
    let guids: Vec<&str> = reads.iter().map(|read| read.guid.as_str()).collect();
    let found = packages::find_many_with_space_and_metadata(conn, &guids)?;
    let mut memberships: Vec<(&str, String, Membership)> = Vec::new();
    let mut answers = Vec::with_capacity(reads.len());
    for (read, found) in reads.iter().zip(found) {
        let Some((package, space, metadata)) = found else {
            answers.push(None);
            continue;
        };
        let membership = match &read.user {
            None => Membership::default(),
            Some(user) => match memberships
                .iter()
                .find(|(u, s, _)| u == user && *s == space)
            {
                Some((_, _, membership)) => membership.clone(),
                None => {
                    let membership = context::membership(conn, user, &space)?.unwrap_or_default();
                    memberships.push((user, space, membership.clone()));
                    membership
                }
            },
        };
        answers.push(Some((PackageView { package, metadata }, membership)));
    }
    Ok(answers)
}

impl Services {
    /// The package with its metadata, and what the caller holds in its space; `NotFound`
    /// when it does not exist or the caller cannot read it. Reads that arrive together go
    /// to the database together.
    pub(crate) async fn readable_package_view(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
    ) -> Result<(PackageView, Membership)> {
        let read = PackageRead {
            guid: guid.clone(),
            user: (!principal.is_admin()).then(|| principal.user_guid.clone()),
        };
        match self.package_reads.get(read).await? {
            Some((view, membership)) if readable(principal, &membership) => Ok((view, membership)),
            _ => Err(ServiceError::NotFound(Resource::Package)),
        }
    }

    /// A resource that hangs off a space, with what the caller holds there; `NotFound`
    /// (as `missing`) when it does not exist or the caller cannot read it.
    pub(crate) async fn readable<T, F>(
        &self,
        principal: &Principal,
        missing: Resource,
        find: F,
    ) -> Result<(T, Membership)>
    where
        T: Send + 'static,
        F: FnOnce(
                &mut packages_storage::AnyConnection,
            ) -> Result<Option<(T, SpaceGuid)>, packages_storage::StorageError>
            + Send
            + 'static,
    {
        let (user, admin) = (principal.user_guid.clone(), principal.is_admin());
        let found = self
            .db
            .read(move |conn| {
                let Some((resource, space)) = find(conn)? else {
                    return Ok(None);
                };
                // Admins see every space: no need to look their roles up.
                let membership = if admin {
                    Membership::default()
                } else {
                    context::membership(conn, &user, &space)?.unwrap_or_default()
                };
                Ok(Some((resource, membership)))
            })
            .await?;
        match found {
            Some((resource, membership)) if readable(principal, &membership) => {
                Ok((resource, membership))
            }
            _ => Err(ServiceError::NotFound(missing)),
        }
    }

    /// The package and what the caller holds in its space.
    pub(crate) async fn readable_package(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
    ) -> Result<(Package, Membership)> {
        let guid = guid.clone();
        self.readable(principal, Resource::Package, move |conn| {
            Ok(packages::find_with_space(conn, &guid)?.map(|(p, space)| (p, space.into())))
        })
        .await
    }

    /// The app and what the caller holds in its space.
    pub(crate) async fn readable_app(
        &self,
        principal: &Principal,
        guid: &AppGuid,
    ) -> Result<(App, Membership)> {
        let guid = guid.clone();
        self.readable(principal, Resource::App, move |conn| {
            Ok(context::find_app(conn, &guid)?.map(|app| {
                let space = app.space_guid.clone();
                (app, space)
            }))
        })
        .await
    }
}
