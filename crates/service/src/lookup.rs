//! Lookups with access decisions, in Cloud Controller's order: a resource the caller
//! cannot read is reported as missing.

use packages_domain::access::Membership;
use packages_domain::context::App;
use packages_domain::{Access, AppGuid, Package, PackageGuid, Principal, SpaceGuid};
use packages_storage::context;
use packages_storage::packages;

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

impl Services {
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
