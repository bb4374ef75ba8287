//! What packages hang off: organizations, spaces, roles and apps.

use crate::access::RoleType;
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub guid: String,
    pub name: String,
    pub suspended: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub guid: String,
    pub name: String,
    pub organization_guid: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where a role applies: a space for space roles, an organization for org roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleTarget {
    Space(String),
    Organization(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub guid: String,
    pub role_type: RoleType,
    pub user_guid: String,
    pub target: RoleTarget,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
