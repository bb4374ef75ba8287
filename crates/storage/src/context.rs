//! Organizations, spaces, roles and apps: what packages hang off and what decides who
//! sees them.

use diesel::prelude::*;
use packages_domain::access::Membership;
use packages_domain::context::{App, Organization, Role, RoleTarget, Space};
use packages_domain::{ListQuery, Package, PackageType, RoleType};

use crate::jobs::{self, NewJob};
use crate::rows::{AppRow, OrganizationRow, PackageRow, RoleRow, SpaceRow};
use crate::schema::{apps, organizations, packages, roles, spaces};
use crate::{AnyConnection, StorageError, write_transaction};

/// Which rows a list returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Admins see everything.
    All,
    /// Others see what their roles reach; holds the user's GUID.
    User(String),
}

/// GUIDs of the spaces a user reaches through a space role or by managing the space's
/// organization.
pub(crate) fn visible_space_guids(
    conn: &mut AnyConnection,
    user: &str,
) -> Result<Vec<String>, StorageError> {
    let held: Vec<(String, String, Option<String>)> = roles::table
        .filter(roles::user_guid.eq(user))
        .select((roles::role_type, roles::target_guid, roles::space_guid))
        .load(conn)?;
    let mut guids: Vec<String> = Vec::new();
    let mut managed_orgs: Vec<String> = Vec::new();
    for (role, target, space) in held {
        if space.is_some() {
            guids.push(target);
        } else if role == RoleType::OrganizationManager.as_str() {
            managed_orgs.push(target);
        }
    }
    if !managed_orgs.is_empty() {
        let in_managed: Vec<String> = spaces::table
            .filter(spaces::organization_guid.eq_any(&managed_orgs))
            .select(spaces::guid)
            .load(conn)?;
        guids.extend(in_managed);
    }
    guids.sort();
    guids.dedup();
    Ok(guids)
}

/// GUIDs of the organizations a user holds any role in, directly or through a space.
fn visible_org_guids(conn: &mut AnyConnection, user: &str) -> Result<Vec<String>, StorageError> {
    let held: Vec<(String, Option<String>)> = roles::table
        .filter(roles::user_guid.eq(user))
        .select((roles::target_guid, roles::space_guid))
        .load(conn)?;
    let (space_targets, org_targets): (Vec<_>, Vec<_>) =
        held.into_iter().partition(|(_, space)| space.is_some());
    let mut guids: Vec<String> = org_targets.into_iter().map(|(target, _)| target).collect();
    let space_guids: Vec<String> = space_targets
        .into_iter()
        .map(|(target, _)| target)
        .collect();
    if !space_guids.is_empty() {
        let via_spaces: Vec<String> = spaces::table
            .filter(spaces::guid.eq_any(&space_guids))
            .select(spaces::organization_guid)
            .load(conn)?;
        guids.extend(via_spaces);
    }
    guids.sort();
    guids.dedup();
    Ok(guids)
}

/// What `user` holds in `space_guid`; `None` when the space does not exist.
pub fn membership(
    conn: &mut AnyConnection,
    user: &str,
    space_guid: &str,
) -> Result<Option<Membership>, StorageError> {
    let Some((org_guid, org_suspended)) = spaces::table
        .inner_join(organizations::table.on(organizations::guid.eq(spaces::organization_guid)))
        .filter(spaces::guid.eq(space_guid))
        .select((spaces::organization_guid, organizations::suspended))
        // A key: one row at most. No bound LIMIT, which would have SQLite parse the
        // statement again at every binding.
        .get_result::<(String, bool)>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let held: Vec<(String, String)> = roles::table
        .filter(roles::user_guid.eq(user))
        .filter(roles::target_guid.eq_any([space_guid, org_guid.as_str()]))
        .select((roles::role_type, roles::target_guid))
        .load(conn)?;
    let mut membership = Membership {
        org_suspended,
        ..Membership::default()
    };
    for (role, target) in held {
        match role.parse::<RoleType>() {
            Ok(RoleType::OrganizationManager) if target == org_guid => {
                membership.org_manager = true
            }
            Ok(r) if r.is_space_role() && target == space_guid => membership.space_roles.push(r),
            _ => {}
        }
    }
    Ok(Some(membership))
}

/// Whether `user` holds any role in the organization or one of its spaces.
pub fn is_org_member(
    conn: &mut AnyConnection,
    user: &str,
    org_guid: &str,
) -> Result<bool, StorageError> {
    Ok(visible_org_guids(conn, user)?.iter().any(|g| g == org_guid))
}

/// One page of `$table` in creation order and the total count, narrowed to the rows whose
/// `$column` is among `$visible` when that is `Some`. A macro: each table is its own type.
macro_rules! page_of {
    ($conn:expr, $table:ident, $row:ty, $column:expr, $visible:expr, $query:expr) => {{
        let visible: &Option<Vec<String>> = $visible;
        let filtered = || {
            let mut q = $table::table.into_boxed();
            if let Some(guids) = visible {
                q = q.filter($column.eq_any(guids.clone()));
            }
            q
        };
        let total: i64 = filtered().count().get_result($conn)?;
        let rows: Vec<$row> = filtered()
            .order($table::id.asc())
            .limit($query.limit())
            .offset($query.offset())
            .select(<$row>::as_select())
            .load($conn)?;
        (rows, u64::try_from(total).unwrap_or(0))
    }};
}

/// The rows of `$table` with `guid`, as `$row`, if any. A macro: each table is its own type.
macro_rules! find_by_guid {
    ($conn:expr, $table:ident, $row:ty, $guid:expr) => {
        $table::table
            .filter($table::guid.eq($guid))
            .select(<$row>::as_select())
            // A key: one row at most, and no bound LIMIT (see `packages::find`).
            .get_result::<$row>($conn)
            .optional()?
    };
}

/// The GUIDs a list is narrowed to: none for admins, else what `reach` finds for the user.
fn narrowed(
    conn: &mut AnyConnection,
    visibility: &Visibility,
    reach: impl FnOnce(&mut AnyConnection, &str) -> Result<Vec<String>, StorageError>,
) -> Result<Option<Vec<String>>, StorageError> {
    match visibility {
        Visibility::All => Ok(None),
        Visibility::User(user) => reach(conn, user).map(Some),
    }
}

// Organizations

pub fn insert_org(conn: &mut AnyConnection, org: &Organization) -> Result<(), StorageError> {
    diesel::insert_into(organizations::table)
        .values((
            organizations::guid.eq(org.guid.as_str()),
            organizations::name.eq(&org.name),
            organizations::suspended.eq(org.suspended),
            organizations::created_at.eq(org.created_at.seconds()),
            organizations::updated_at.eq(org.updated_at.seconds()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_org(
    conn: &mut AnyConnection,
    guid: &str,
) -> Result<Option<Organization>, StorageError> {
    Ok(find_by_guid!(conn, organizations, OrganizationRow, guid).map(Organization::from))
}

pub fn list_orgs(
    conn: &mut AnyConnection,
    visibility: &Visibility,
    query: &ListQuery,
) -> Result<(Vec<Organization>, u64), StorageError> {
    let visible = narrowed(conn, visibility, visible_org_guids)?;
    let (rows, total) = page_of!(
        conn,
        organizations,
        OrganizationRow,
        organizations::guid,
        &visible,
        query
    );
    Ok((rows.into_iter().map(Organization::from).collect(), total))
}

/// Deletes a row whose removal cascades to the packages of `app_guids`, recording in the
/// same transaction a job per bits package to delete its blob, in place of the jobs the
/// package had pending. Returns whether the row was there.
fn delete_cascading(
    conn: &mut AnyConnection,
    app_guids: &[String],
    delete_row: impl FnOnce(&mut AnyConnection) -> diesel::QueryResult<usize>,
    delete_job: &dyn Fn(&Package) -> NewJob,
) -> Result<bool, StorageError> {
    let doomed: Vec<Package> = packages::table
        .filter(packages::app_guid.eq_any(app_guids))
        .filter(packages::package_type.eq(PackageType::Bits.as_str()))
        .select(PackageRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Package::try_from)
        .collect::<Result<_, _>>()?;
    if delete_row(conn)? != 1 {
        return Ok(false);
    }
    for package in &doomed {
        jobs::replace_with(conn, &package.guid, &delete_job(package))?;
    }
    Ok(true)
}

/// Deletes an organization with its spaces, roles, apps and packages (the database
/// cascades); jobs to delete the packages' bits are recorded in the same transaction.
pub fn delete_org(
    conn: &mut AnyConnection,
    guid: &str,
    delete_job: &dyn Fn(&Package) -> NewJob,
) -> Result<bool, StorageError> {
    write_transaction(conn, |conn| {
        let app_guids: Vec<String> = apps::table
            .filter(
                apps::space_guid.eq_any(
                    spaces::table
                        .filter(spaces::organization_guid.eq(guid))
                        .select(spaces::guid),
                ),
            )
            .select(apps::guid)
            .load(conn)?;
        delete_cascading(
            conn,
            &app_guids,
            |conn| {
                diesel::delete(organizations::table.filter(organizations::guid.eq(guid)))
                    .execute(conn)
            },
            delete_job,
        )
    })
}

// Spaces

pub fn insert_space(conn: &mut AnyConnection, space: &Space) -> Result<(), StorageError> {
    diesel::insert_into(spaces::table)
        .values((
            spaces::guid.eq(space.guid.as_str()),
            spaces::name.eq(&space.name),
            spaces::organization_guid.eq(space.organization_guid.as_str()),
            spaces::created_at.eq(space.created_at.seconds()),
            spaces::updated_at.eq(space.updated_at.seconds()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_space(conn: &mut AnyConnection, guid: &str) -> Result<Option<Space>, StorageError> {
    Ok(find_by_guid!(conn, spaces, SpaceRow, guid).map(Space::from))
}

pub fn list_spaces(
    conn: &mut AnyConnection,
    visibility: &Visibility,
    query: &ListQuery,
) -> Result<(Vec<Space>, u64), StorageError> {
    let visible = narrowed(conn, visibility, visible_space_guids)?;
    let (rows, total) = page_of!(conn, spaces, SpaceRow, spaces::guid, &visible, query);
    Ok((rows.into_iter().map(Space::from).collect(), total))
}

pub fn delete_space(
    conn: &mut AnyConnection,
    guid: &str,
    delete_job: &dyn Fn(&Package) -> NewJob,
) -> Result<bool, StorageError> {
    write_transaction(conn, |conn| {
        let app_guids: Vec<String> = apps::table
            .filter(apps::space_guid.eq(guid))
            .select(apps::guid)
            .load(conn)?;
        delete_cascading(
            conn,
            &app_guids,
            |conn| diesel::delete(spaces::table.filter(spaces::guid.eq(guid))).execute(conn),
            delete_job,
        )
    })
}

// Roles

pub fn insert_role(conn: &mut AnyConnection, role: &Role) -> Result<(), StorageError> {
    let (space, org, target) = match &role.target {
        RoleTarget::Space(s) => (Some(s.as_str()), None, s.as_str()),
        RoleTarget::Organization(o) => (None, Some(o.as_str()), o.as_str()),
    };
    diesel::insert_into(roles::table)
        .values((
            roles::guid.eq(&role.guid),
            roles::role_type.eq(role.role_type.as_str()),
            roles::user_guid.eq(&role.user_guid),
            roles::space_guid.eq(space),
            roles::organization_guid.eq(org),
            roles::target_guid.eq(target),
            roles::created_at.eq(role.created_at.seconds()),
            roles::updated_at.eq(role.updated_at.seconds()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_role(conn: &mut AnyConnection, guid: &str) -> Result<Option<Role>, StorageError> {
    find_by_guid!(conn, roles, RoleRow, guid)
        .map(Role::try_from)
        .transpose()
}

pub fn list_roles(
    conn: &mut AnyConnection,
    visibility: &Visibility,
    query: &ListQuery,
) -> Result<(Vec<Role>, u64), StorageError> {
    let visible = narrowed(conn, visibility, |conn, user| {
        let mut targets = visible_space_guids(conn, user)?;
        targets.extend(visible_org_guids(conn, user)?);
        Ok(targets)
    })?;
    let (rows, total) = page_of!(conn, roles, RoleRow, roles::target_guid, &visible, query);
    Ok((
        rows.into_iter()
            .map(Role::try_from)
            .collect::<Result<_, _>>()?,
        total,
    ))
}

pub fn delete_role(conn: &mut AnyConnection, guid: &str) -> Result<bool, StorageError> {
    Ok(diesel::delete(roles::table.filter(roles::guid.eq(guid))).execute(conn)? == 1)
}

// Apps

pub fn insert_app(conn: &mut AnyConnection, app: &App) -> Result<(), StorageError> {
    diesel::insert_into(apps::table)
        .values((
            apps::guid.eq(app.guid.as_str()),
            apps::name.eq(&app.name),
            apps::space_guid.eq(app.space_guid.as_str()),
            apps::created_at.eq(app.created_at.seconds()),
            apps::updated_at.eq(app.updated_at.seconds()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_app(conn: &mut AnyConnection, guid: &str) -> Result<Option<App>, StorageError> {
    Ok(find_by_guid!(conn, apps, AppRow, guid).map(App::from))
}

pub fn list_apps(
    conn: &mut AnyConnection,
    visibility: &Visibility,
    query: &ListQuery,
) -> Result<(Vec<App>, u64), StorageError> {
    let visible = narrowed(conn, visibility, visible_space_guids)?;
    let (rows, total) = page_of!(conn, apps, AppRow, apps::space_guid, &visible, query);
    Ok((rows.into_iter().map(App::from).collect(), total))
}

/// Deletes an app and its packages; their bits go through jobs recorded in the same
/// transaction.
pub fn delete_app(
    conn: &mut AnyConnection,
    guid: &str,
    delete_job: &dyn Fn(&Package) -> NewJob,
) -> Result<bool, StorageError> {
    write_transaction(conn, |conn| {
        delete_cascading(
            conn,
            &[guid.to_owned()],
            |conn| diesel::delete(apps::table.filter(apps::guid.eq(guid))).execute(conn),
            delete_job,
        )
    })
}
