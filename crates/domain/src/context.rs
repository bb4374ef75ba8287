//! What packages hang off: organizations, spaces, roles and apps, and the rules of the
//! requests that create them (Cloud Controller's GA texts).

use serde_json::{Map, Value};

use crate::access::RoleType;
use crate::ids::{AppGuid, OrgGuid, SpaceGuid};
use crate::time::Timestamp;
use crate::validation::{Invalid, unknown_fields};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub guid: OrgGuid,
    pub name: String,
    pub suspended: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub guid: SpaceGuid,
    pub name: String,
    pub organization_guid: OrgGuid,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub guid: AppGuid,
    pub name: String,
    pub space_guid: SpaceGuid,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where a role applies: a space for space roles, an organization for org roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleTarget {
    Space(SpaceGuid),
    Organization(OrgGuid),
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

/// What `POST /v3/organizations` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgCreate {
    pub name: String,
    pub suspended: bool,
}

/// What `POST /v3/spaces` asks for; a null organization passes validation and then fails
/// the lookup, as in Cloud Controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceCreate {
    pub name: String,
    pub organization_guid: Option<String>,
}

/// What `POST /v3/apps` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCreate {
    pub name: String,
    pub space_guid: Option<String>,
}

/// What `POST /v3/roles` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleCreate {
    pub role_type: RoleType,
    pub user_guid: String,
    pub target: RoleTarget,
}

fn humanize(attribute: &str) -> String {
    let mut chars = attribute.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars)
            .collect::<String>()
            .replace('_', " "),
        None => String::new(),
    }
}

/// A name as organizations, spaces and apps take it.
fn name(
    body: &Map<String, Value>,
    required_text: &str,
    errors: &mut Vec<String>,
) -> Option<String> {
    match body.get("name") {
        None | Some(Value::Null) => {
            errors.push(required_text.into());
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push("Name can't be blank".into());
            None
        }
        Some(Value::String(s)) if s.chars().count() > 255 => {
            errors.push("Name is too long (maximum is 255 characters)".into());
            None
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            errors.push("Name must not contain escaped characters".into());
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push("Name must be a string".into());
            None
        }
    }
}

/// Cloud Controller's relationship rules for `relationships: {<allowed>: {"data": {"guid"}}}`.
/// Returns each present relationship's GUID (`None` for `"data": null`); messages are
/// prefixed with `Relationships `.
fn relationships(
    body: &Map<String, Value>,
    allowed: &[&str],
    errors: &mut Vec<String>,
) -> Vec<(String, Option<String>)> {
    let Some(Value::Object(rels)) = body.get("relationships") else {
        errors.push("Relationships 'relationships' is not an object".into());
        return Vec::new();
    };
    if rels.is_empty() {
        errors.push(
            "Relationships 'relationships' must include one or more valid relationships".into(),
        );
        return Vec::new();
    }
    if let Some(unknown) = unknown_fields(rels, allowed) {
        errors.push(format!("Relationships {unknown}"));
    }
    let mut found = Vec::new();
    for rel in allowed {
        let Some(value) = rels.get(*rel) else {
            continue;
        };
        let structured = format!(
            "Relationships {} must be structured like this: \"{rel}: {{\"data\": {{\"guid\": \"valid-guid\"}}}}\"",
            humanize(rel)
        );
        let data = match value {
            Value::Object(o) if o.len() == 1 && o.contains_key("data") => o.get("data"),
            _ => {
                errors.push(structured);
                continue;
            }
        };
        match data {
            Some(Value::Null) => found.push(((*rel).to_owned(), None)),
            Some(Value::Object(d)) if d.len() == 1 && d.contains_key("guid") => match d.get("guid")
            {
                Some(Value::String(g)) if (1..=200).contains(&g.chars().count()) => {
                    found.push(((*rel).to_owned(), Some(g.clone())));
                }
                Some(Value::String(_)) => errors.push(format!(
                    "Relationships {} guid must be between 1 and 200 characters",
                    humanize(rel)
                )),
                _ => errors.push(format!(
                    "Relationships {} guid must be a string",
                    humanize(rel)
                )),
            },
            _ => errors.push(structured),
        }
    }
    found
}

fn suspended(body: &Map<String, Value>, errors: &mut Vec<String>) -> bool {
    match body.get("suspended") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push("Suspended must be a boolean".into());
            false
        }
    }
}

fn finish<T>(errors: Vec<String>, value: Option<T>) -> Result<T, Invalid> {
    match value {
        Some(v) if errors.is_empty() => Ok(v),
        _ => Err(Invalid(errors)),
    }
}

pub fn org_create(body: &Map<String, Value>) -> Result<OrgCreate, Invalid> {
    let mut errors: Vec<String> = unknown_fields(body, &["name", "suspended"])
        .into_iter()
        .collect();
    let name = name(body, "Name can't be blank", &mut errors);
    let suspended = suspended(body, &mut errors);
    finish(errors, name.map(|name| OrgCreate { name, suspended }))
}

pub fn space_create(body: &Map<String, Value>) -> Result<SpaceCreate, Invalid> {
    let mut errors: Vec<String> = unknown_fields(body, &["name", "relationships"])
        .into_iter()
        .collect();
    let rels = relationships(body, &["organization"], &mut errors);
    if rels.is_empty()
        && body
            .get("relationships")
            .is_some_and(|r| r.as_object().is_some_and(|o| !o.is_empty()))
    {
        errors.push("Relationships Organization can't be blank".into());
    }
    let name = name(body, "Name can't be blank", &mut errors);
    let organization_guid = rels
        .into_iter()
        .find(|(r, _)| r == "organization")
        .and_then(|(_, g)| g);
    finish(
        errors,
        name.map(|name| SpaceCreate {
            name,
            organization_guid,
        }),
    )
}

pub fn app_create(body: &Map<String, Value>) -> Result<AppCreate, Invalid> {
    let mut errors: Vec<String> = unknown_fields(body, &["name", "relationships"])
        .into_iter()
        .collect();
    let rels = relationships(body, &["space"], &mut errors);
    if rels.is_empty()
        && body
            .get("relationships")
            .is_some_and(|r| r.as_object().is_some_and(|o| !o.is_empty()))
    {
        errors.push("Relationships Space can't be blank".into());
    }
    let name = name(body, "Name must be a string", &mut errors);
    let space_guid = rels
        .into_iter()
        .find(|(r, _)| r == "space")
        .and_then(|(_, g)| g);
    finish(errors, name.map(|name| AppCreate { name, space_guid }))
}

pub fn role_create(body: &Map<String, Value>) -> Result<RoleCreate, Invalid> {
    let mut errors: Vec<String> = unknown_fields(body, &["type", "relationships"])
        .into_iter()
        .collect();
    let rels = relationships(body, &["user", "space", "organization"], &mut errors);
    let role_type = body
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<RoleType>().ok());
    if role_type.is_none() {
        let allowed: Vec<String> = RoleType::ALL
            .iter()
            .map(|r| format!("\"{}\"", r.as_str()))
            .collect();
        errors.push(format!(
            "Type must be one of the allowed types [{}]",
            allowed.join(", ")
        ));
    }
    let guid_of = |rel: &str| rels.iter().find(|(r, _)| r == rel).map(|(_, g)| g.clone());
    let (user, space, org) = (guid_of("user"), guid_of("space"), guid_of("organization"));
    let has_rels = matches!(body.get("relationships"), Some(Value::Object(o)) if !o.is_empty());
    if has_rels {
        if user.is_none() {
            errors.push("Relationships User can't be blank".into());
        }
        match (&space, &org) {
            (None, None) => {
                errors.push("Relationships must specify either a space or an organization.".into())
            }
            (Some(_), Some(_)) => {
                errors.push("Relationships cannot specify both an organization and a space.".into())
            }
            (Some(_), None) if role_type.is_some_and(|t| !t.is_space_role()) => {
                errors.push(format!(
                    "Relationships Space cannot be provided with the organization role type: '{}'.",
                    role_type.map(RoleType::as_str).unwrap_or_default()
                ))
            }
            (None, Some(_)) if role_type.is_some_and(RoleType::is_space_role) => {
                errors.push(format!(
                    "Relationships Organization cannot be provided with the space role type: '{}'.",
                    role_type.map(RoleType::as_str).unwrap_or_default()
                ))
            }
            _ => {}
        }
    }
    let target = match (space, org) {
        (Some(space), None) => Some(RoleTarget::Space(SpaceGuid::new(space.unwrap_or_default()))),
        (None, Some(org)) => Some(RoleTarget::Organization(OrgGuid::new(
            org.unwrap_or_default(),
        ))),
        _ => None,
    };
    let user = user.flatten();
    if has_rels && user.is_none() && guid_of("user").is_some() {
        errors.push("Relationships User must have a username or guid specified".into());
    }
    let value = match (role_type, user, target) {
        (Some(role_type), Some(user_guid), Some(target)) => Some(RoleCreate {
            role_type,
            user_guid,
            target,
        }),
        _ => None,
    };
    finish(errors, value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn err<T: std::fmt::Debug>(r: Result<T, Invalid>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn organizations() {
        assert_eq!(
            org_create(&obj(json!({"name": "o", "suspended": true}))).unwrap(),
            OrgCreate {
                name: "o".into(),
                suspended: true
            }
        );
        assert_eq!(err(org_create(&obj(json!({})))), "Name can't be blank");
        assert_eq!(
            err(org_create(&obj(json!({"name": 5})))),
            "Name must be a string"
        );
        assert_eq!(
            err(org_create(&obj(json!({"name": "x".repeat(256)})))),
            "Name is too long (maximum is 255 characters)"
        );
        assert_eq!(
            err(org_create(&obj(json!({"name": "a\nb"})))),
            "Name must not contain escaped characters"
        );
        assert_eq!(
            err(org_create(&obj(
                json!({"name": "o", "suspended": "yes", "x": 1})
            ))),
            "Unknown field(s): 'x', Suspended must be a boolean"
        );
    }

    #[test]
    fn spaces_and_apps() {
        let ok = space_create(&obj(
            json!({"name": "s", "relationships": {"organization": {"data": {"guid": "o1"}}}}),
        ))
        .unwrap();
        assert_eq!(ok.organization_guid.as_deref(), Some("o1"));
        let null_org = space_create(&obj(
            json!({"name": "s", "relationships": {"organization": {"data": null}}}),
        ))
        .unwrap();
        assert_eq!(null_org.organization_guid, None);
        assert_eq!(
            err(space_create(&obj(json!({"name": "s"})))),
            "Relationships 'relationships' is not an object"
        );
        assert_eq!(
            err(space_create(&obj(
                json!({"name": "s", "relationships": {}})
            ))),
            "Relationships 'relationships' must include one or more valid relationships"
        );
        assert_eq!(
            err(app_create(&obj(
                json!({"relationships": {"space": {"guid": "x"}}})
            ))),
            "Relationships Space must be structured like this: \"space: {\"data\": {\"guid\": \"valid-guid\"}}\", Relationships Space can't be blank, Name must be a string"
        );
        assert_eq!(
            err(app_create(&obj(
                json!({"name": "a", "relationships": {"space": {"data": {"guid": 1}}}})
            ))),
            "Relationships Space guid must be a string, Relationships Space can't be blank"
        );
        let app = app_create(&obj(
            json!({"name": "a", "relationships": {"space": {"data": {"guid": "s1"}}}}),
        ))
        .unwrap();
        assert_eq!(
            app,
            AppCreate {
                name: "a".into(),
                space_guid: Some("s1".into())
            }
        );
    }

    #[test]
    fn roles() {
        let ok = role_create(&obj(json!({"type": "space_developer", "relationships": {"user": {"data": {"guid": "u"}}, "space": {"data": {"guid": "s"}}}}))).unwrap();
        assert_eq!(ok.target, RoleTarget::Space("s".into()));
        let org = role_create(&obj(json!({"type": "organization_manager", "relationships": {"user": {"data": {"guid": "u"}}, "organization": {"data": {"guid": "o"}}}}))).unwrap();
        assert_eq!(org.target, RoleTarget::Organization("o".into()));
        assert_eq!(
            err(role_create(&obj(json!({})))),
            "Relationships 'relationships' is not an object, Type must be one of the allowed types [\"organization_manager\", \"space_auditor\", \"space_developer\", \"space_manager\"]"
        );
        assert_eq!(
            err(role_create(&obj(
                json!({"type": "space_auditor", "relationships": {"user": {"data": {"guid": "u"}}}})
            ))),
            "Relationships must specify either a space or an organization."
        );
        assert_eq!(
            err(role_create(&obj(
                json!({"type": "space_auditor", "relationships": {"user": {"data": {"guid": "u"}}, "space": {"data": {"guid": "s"}}, "organization": {"data": {"guid": "o"}}}})
            ))),
            "Relationships cannot specify both an organization and a space."
        );
        assert_eq!(
            err(role_create(&obj(
                json!({"type": "organization_manager", "relationships": {"user": {"data": {"guid": "u"}}, "space": {"data": {"guid": "s"}}}})
            ))),
            "Relationships Space cannot be provided with the organization role type: 'organization_manager'."
        );
        assert_eq!(
            err(role_create(&obj(
                json!({"type": "space_manager", "relationships": {"space": {"data": {"guid": "s"}}}})
            ))),
            "Relationships User can't be blank"
        );
    }
}
