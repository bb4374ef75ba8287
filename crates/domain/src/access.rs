//! Who may do what: token scopes and space roles, as Cloud Controller (E2015) decides.
//!
//! The check order every endpoint follows is: authentication (401), scope (403), request
//! validation (400/422), lookup where a resource the caller cannot read is missing (404),
//! write role (403), state checks, action.

use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// OAuth scopes Cloud Controller understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, EnumString, IntoStaticStr)]
pub enum Scope {
    #[strum(serialize = "cloud_controller.read")]
    Read,
    #[strum(serialize = "cloud_controller.write")]
    Write,
    #[strum(serialize = "cloud_controller.admin")]
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The caller of a request, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_guid: String,
    read: bool,
    write: bool,
    admin: bool,
}

impl Principal {
    pub fn new<S: AsRef<str>>(user_guid: impl Into<String>, scopes: &[S]) -> Self {
        let has = |scope: Scope| scopes.iter().any(|s| s.as_ref() == scope.as_str());
        Principal {
            user_guid: user_guid.into(),
            read: has(Scope::Read),
            write: has(Scope::Write),
            admin: has(Scope::Admin),
        }
    }

    /// Admins bypass scope and role checks and see every space.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Read endpoints need `cloud_controller.read` unless admin.
    pub fn may_read(&self) -> bool {
        self.admin || self.read
    }

    /// Write endpoints need `cloud_controller.write` unless admin.
    pub fn may_write(&self) -> bool {
        self.admin || self.write
    }
}

/// Roles a user holds in a space or an organization. Listed in the order Cloud
/// Controller's error texts name them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum RoleType {
    OrganizationManager,
    SpaceAuditor,
    SpaceDeveloper,
    SpaceManager,
}

impl RoleType {
    pub const ALL: &[RoleType] = RoleType::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Space roles attach to a space; the others to an organization.
    pub fn is_space_role(self) -> bool {
        !matches!(self, RoleType::OrganizationManager)
    }
}

/// What one user holds in one space, as read from storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The user's roles in the space itself.
    pub space_roles: Vec<RoleType>,
    /// The user manages the space's organization.
    pub org_manager: bool,
    /// The space's organization is suspended: it hides everything from non-admins.
    pub org_suspended: bool,
}

/// The decisions built from a principal and a membership.
pub struct Access<'a> {
    pub principal: &'a Principal,
    pub membership: &'a Membership,
}

impl Access<'_> {
    /// Space developers, managers and auditors, and org managers read apps and packages
    /// of the space, unless the organization is suspended.
    pub fn can_read(&self) -> bool {
        if self.principal.is_admin() {
            return true;
        }
        !self.membership.org_suspended
            && (self.membership.org_manager
                || self
                    .membership
                    .space_roles
                    .iter()
                    .any(|r| r.is_space_role()))
    }

    /// Only space developers write (create, copy, upload, delete).
    pub fn can_write(&self) -> bool {
        if self.principal.is_admin() {
            return true;
        }
        !self.membership.org_suspended
            && self
                .membership
                .space_roles
                .contains(&RoleType::SpaceDeveloper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(scopes: &[&str]) -> Principal {
        Principal::new("u1", scopes)
    }

    fn member(roles: &[RoleType], org_manager: bool, org_suspended: bool) -> Membership {
        Membership {
            space_roles: roles.to_vec(),
            org_manager,
            org_suspended,
        }
    }

    #[test]
    fn scopes() {
        let reader = user(&["cloud_controller.read"]);
        assert!(reader.may_read() && !reader.may_write() && !reader.is_admin());
        let writer = user(&["cloud_controller.write"]);
        assert!(!writer.may_read() && writer.may_write());
        let admin = user(&["cloud_controller.admin"]);
        assert!(admin.may_read() && admin.may_write() && admin.is_admin());
        assert!(!user(&["openid", "cloud_controller.reader"]).may_read());
    }

    #[test]
    fn permission_matrix() {
        let p = user(&["cloud_controller.read", "cloud_controller.write"]);
        let cases = [
            (
                member(&[RoleType::SpaceDeveloper], false, false),
                true,
                true,
            ),
            (member(&[RoleType::SpaceManager], false, false), true, false),
            (member(&[RoleType::SpaceAuditor], false, false), true, false),
            (member(&[], true, false), true, false),
            (member(&[], false, false), false, false),
            (
                member(&[RoleType::SpaceDeveloper], false, true),
                false,
                false,
            ),
            (member(&[], true, true), false, false),
        ];
        for (m, read, write) in cases {
            let access = Access {
                principal: &p,
                membership: &m,
            };
            assert_eq!(
                (access.can_read(), access.can_write()),
                (read, write),
                "{m:?}"
            );
        }
        let admin = user(&["cloud_controller.admin"]);
        let nobody = member(&[], false, true);
        let access = Access {
            principal: &admin,
            membership: &nobody,
        };
        assert!(access.can_read() && access.can_write());
    }

    #[test]
    fn role_names() {
        for &r in RoleType::ALL {
            assert_eq!(r.as_str().parse::<RoleType>(), Ok(r));
        }
        assert!("org_auditor".parse::<RoleType>().is_err());
        assert!(!RoleType::OrganizationManager.is_space_role());
    }
}
