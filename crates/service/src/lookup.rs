//! Lookups with access decisions, in Cloud Controller's order: a resource the caller
//! cannot read is reported as missing.

use packages_domain::access::Membership;
use packages_domain::context::App;
use packages_domain::{Access, Package, Principal};
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
    /// The package and what the caller holds in its space; `NotFound` when missing or
    /// unreadable.
    pub(crate) async fn readable_package(
        &self,
        principal: &Principal,
        guid: &str,
    ) -> Result<(Package, Membership)> {
        let (user, guid) = (principal.user_guid.clone(), guid.to_owned());
        let found = self
            .db
            .run(move |conn| {
                let Some((package, space)) = packages::find_with_space(conn, &guid)? else {
                    return Ok(None);
                };
                let membership = context::membership(conn, &user, &space)?.unwrap_or_default();
                Ok(Some((package, membership)))
            })
            .await?;
        match found {
            Some((package, membership)) if readable(principal, &membership) => {
                Ok((package, membership))
            }
            _ => Err(ServiceError::NotFound(Resource::Package)),
        }
    }

    /// The app and what the caller holds in its space; `NotFound` when missing or
    /// unreadable.
    pub(crate) async fn readable_app(
        &self,
        principal: &Principal,
        guid: &str,
    ) -> Result<(App, Membership)> {
        let (user, guid) = (principal.user_guid.clone(), guid.to_owned());
        let found = self
            .db
            .run(move |conn| {
                let Some(app) = context::find_app(conn, &guid)? else {
                    return Ok(None);
                };
                let membership =
                    context::membership(conn, &user, &app.space_guid)?.unwrap_or_default();
                Ok(Some((app, membership)))
            })
            .await?;
        match found {
            Some((app, membership)) if readable(principal, &membership) => Ok((app, membership)),
            _ => Err(ServiceError::NotFound(Resource::App)),
        }
    }
}
