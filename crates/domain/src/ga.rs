//! The GA package bodies: create (`POST /v3/packages`), copy
//! (`POST /v3/packages?source_guid=`) and update (`PATCH /v3/packages/:guid`), with the
//! rules and texts of Cloud Controller's `PackageCreateMessage` and
//! `PackageUpdateMessage`. Bodies come already parsed into a JSON object
//! ([`crate::validation::parse_object`]).

use serde_json::{Map, Value};

use crate::metadata::{self, MetadataUpdate};
use crate::package::PackageType;
use crate::validation::{Invalid, MAX_DOCKER_URL, is_blank, unknown_fields};

/// Create and copy, when the app is missing or unreadable (422, not 404).
pub const APP_INVALID: &str = "App is invalid. Ensure it exists and you have access to it.";
/// Copy, when the source package is missing or unreadable.
pub const SOURCE_PACKAGE_INVALID: &str =
    "Source package is invalid. Ensure it exists and you have access to it.";
/// Copy onto the source's own app.
pub const SAME_APP: &str = "Source and destination app cannot be the same";
/// PATCH of a bits package naming credentials.
pub const CREDENTIALS_FOR_BITS: &str = "Cannot update Docker credentials for a buildpack app.";
/// A registry password longer than [`MAX_DOCKER_PASSWORD`].
pub const PASSWORD_TOO_LONG: &str = "docker_password can be up to 5,000 characters";
/// A password while no `packages.encryption_key` is configured.
pub const NO_ENCRYPTION_KEY: &str =
    "Docker credentials cannot be stored: packages.encryption_key is not configured";
/// Longest registry password, in characters (CC's `PackageModel` limit).
pub const MAX_DOCKER_PASSWORD: usize = 5000;
/// Longest registry user name: CC has no rule; registries' own limits are far below,
/// and every free-text field here is bounded.
pub const MAX_DOCKER_USERNAME: usize = 255;

fn too_long_username(username: Option<&str>) -> bool {
    username.is_some_and(|u| u.chars().count() > MAX_DOCKER_USERNAME)
}

const RELATIONSHIP_STRUCTURE: &str = "Relationships App must be structured like this: \"app: {\"data\": {\"guid\": \"valid-guid\"}}\"";

/// A docker package's image and registry credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerData {
    pub image: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// What a valid GA create body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub package_type: PackageType,
    /// `relationships.app.data.guid`; `None` for `"data": null` (then the app is invalid).
    pub app_guid: Option<String>,
    /// Docker packages only.
    pub docker: Option<DockerData>,
    /// Empty when the body has no `metadata`.
    pub metadata: MetadataUpdate,
}

/// What a valid PATCH body asks for. `None` credentials leave the stored ones as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateRequest {
    pub metadata: MetadataUpdate,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl UpdateRequest {
    /// A non-null `username` or `password` was given (refused for bits packages, and the
    /// only change that touches the package row's `updated_at`).
    pub fn changes_credentials(&self) -> bool {
        self.username.is_some() || self.password.is_some()
    }
}

/// The checks on a password made once the app and role are known (spec 3.3 steps 3–4,
/// 5 step 6): its length, then whether it can be stored at all.
pub fn check_password(password: Option<&str>, encryption_configured: bool) -> Result<(), Invalid> {
    match password {
        Some(p) if p.chars().count() > MAX_DOCKER_PASSWORD => Err(Invalid::one(PASSWORD_TOO_LONG)),
        Some(_) if !encryption_configured => Err(Invalid::one(NO_ENCRYPTION_KEY)),
        _ => Ok(()),
    }
}

/// `metadata`, when the body has the key; messages go to `errors`.
fn metadata_rules(body: &Map<String, Value>, errors: &mut Vec<String>) -> MetadataUpdate {
    match body.get("metadata").map(metadata::parse) {
        None => MetadataUpdate::default(),
        Some(Ok(update)) => update,
        Some(Err(messages)) => {
            errors.extend(messages);
            MetadataUpdate::default()
        }
    }
}

/// A credential given neither as a string nor as `null` (this service's rule; CC takes
/// anything).
fn optional_string(
    map: &Map<String, Value>,
    key: &str,
    message: &str,
    errors: &mut Vec<String>,
) -> Option<String> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(message.to_owned());
            None
        }
    }
}

/// CC's `DockerDataValidator`, each message prefixed `Data `. A `data` that is not an
/// object counts as an empty one (CC either fails on it or reads no image from it).
fn docker_data(data: Option<&Value>, errors: &mut Vec<String>) -> Option<DockerData> {
    let empty = Map::new();
    let data = match data {
        Some(Value::Object(map)) => map,
        _ => &empty,
    };
    let image = data.get("image");
    if !matches!(image, Some(Value::String(_))) {
        errors.push("Data Image must be a string".into());
    }
    if is_blank(image) {
        errors.push("Data Image required".into());
    }
    if let Some(unknown) = unknown_fields(data, &["image", "username", "password"]) {
        errors.push(format!("Data {unknown}"));
    }
    if let Some(Value::String(image)) = image
        && image.chars().count() > MAX_DOCKER_URL
    {
        errors.push(format!(
            "Data Image is too long (maximum is {MAX_DOCKER_URL} characters)"
        ));
    }
    let username = optional_string(data, "username", "Data Username must be a string", errors);
    if too_long_username(username.as_deref()) {
        errors.push(format!(
            "Data Username is too long (maximum is {MAX_DOCKER_USERNAME} characters)"
        ));
    }
    let password = optional_string(data, "password", "Data Password must be a string", errors);
    match image {
        Some(Value::String(image)) => Some(DockerData {
            image: image.clone(),
            username,
            password,
        }),
        _ => None,
    }
}

/// CC's `RelationshipValidator` and `ToOneRelationshipValidator` for
/// `relationships.app`, each message prefixed `Relationships `. Returns the app guid.
fn relationships(relationships: Option<&Value>, errors: &mut Vec<String>) -> Option<String> {
    let Some(Value::Object(relationships)) = relationships else {
        errors.push("Relationships 'relationships' is not an object".into());
        return None;
    };
    if relationships.is_empty() {
        errors.push(
            "Relationships 'relationships' must include one or more valid relationships".into(),
        );
        return None;
    }
    if let Some(unknown) = unknown_fields(relationships, &["app"]) {
        errors.push(format!("Relationships {unknown}"));
    }
    let app = relationships.get("app");
    if is_blank(app) {
        errors.push("Relationships App can't be blank".into());
    }
    // Exactly `{"data": null}` or `{"data": {"guid": …}}`.
    let data = match app {
        Some(Value::Object(app)) if app.len() == 1 => app.get("data"),
        _ => None,
    };
    let guid = match data {
        Some(Value::Null) => return None,
        Some(Value::Object(data)) if data.len() == 1 => data.get("guid"),
        _ => None,
    };
    match guid {
        None => {
            errors.push(RELATIONSHIP_STRUCTURE.into());
            None
        }
        Some(Value::String(guid)) => {
            if !(1..=200).contains(&guid.chars().count()) {
                errors.push("Relationships App guid must be between 1 and 200 characters".into());
            }
            Some(guid.clone())
        }
        Some(_) => {
            errors.push("Relationships App guid must be a string".into());
            errors.push("Relationships App guid must be between 1 and 200 characters".into());
            None
        }
    }
}

/// Validates a GA create body (spec 3.2): every failing rule, in CC's order — metadata,
/// unknown keys, docker or bits data, relationships, type.
pub fn parse_create(body: &Map<String, Value>) -> Result<CreateRequest, Invalid> {
    let mut errors = Vec::new();
    let metadata = metadata_rules(body, &mut errors);
    if let Some(unknown) = unknown_fields(body, &["type", "data", "relationships", "metadata"]) {
        errors.push(unknown);
    }
    let package_type = match body.get("type") {
        Some(Value::String(t)) => t.parse::<PackageType>().ok(),
        _ => None,
    };
    let docker = match package_type {
        Some(PackageType::Docker) => docker_data(body.get("data"), &mut errors),
        Some(PackageType::Bits) => {
            match body.get("data") {
                None | Some(Value::Null) => {}
                Some(Value::Object(data)) if data.is_empty() => {}
                Some(_) => {
                    errors.push("Data Data must be empty if provided for bits packages".into())
                }
            }
            None
        }
        None => None,
    };
    let app_guid = relationships(body.get("relationships"), &mut errors);
    if package_type.is_none() {
        errors.push("Type must be one of 'bits, docker'".into());
    }
    match package_type {
        Some(package_type) if errors.is_empty() => Ok(CreateRequest {
            package_type,
            app_guid,
            docker,
            metadata,
        }),
        _ => Err(Invalid(errors)),
    }
}

/// The destination app of a copy: `relationships.app.data.guid` when it is a string.
/// Nothing else in the body is read; without a guid the app is invalid (422).
pub fn copy_app_guid(body: &Map<String, Value>) -> Option<String> {
    body.get("relationships")?
        .get("app")?
        .get("data")?
        .get("guid")?
        .as_str()
        .map(str::to_owned)
}

/// Validates a PATCH body (spec 5 steps 1–2): metadata, unknown keys, then the
/// credentials' types. An empty body is valid and changes nothing.
pub fn parse_update(body: &Map<String, Value>) -> Result<UpdateRequest, Invalid> {
    let mut errors = Vec::new();
    let metadata = metadata_rules(body, &mut errors);
    if let Some(unknown) = unknown_fields(body, &["metadata", "username", "password"]) {
        errors.push(unknown);
    }
    let username = optional_string(body, "username", "Username must be a string", &mut errors);
    if too_long_username(username.as_deref()) {
        errors.push(format!(
            "Username is too long (maximum is {MAX_DOCKER_USERNAME} characters)"
        ));
    }
    let password = optional_string(body, "password", "Password must be a string", &mut errors);
    if errors.is_empty() {
        Ok(UpdateRequest {
            metadata,
            username,
            password,
        })
    } else {
        Err(Invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::metadata::MetadataKey;

    fn object(body: Value) -> Map<String, Value> {
        match body {
            Value::Object(map) => map,
            other => panic!("object expected, got {other}"),
        }
    }

    fn create(body: Value) -> Result<CreateRequest, Invalid> {
        parse_create(&object(body))
    }

    fn create_errors(body: Value) -> String {
        create(body).unwrap_err().to_string()
    }

    fn update_errors(body: Value) -> String {
        parse_update(&object(body)).unwrap_err().to_string()
    }

    const APP: &str = "5d2e0b6f-4f1c-2a1e-4a7e-9d0f0e0b1c2d";
    const STRUCTURE: &str = "Relationships App must be structured like this: \"app: {\"data\": {\"guid\": \"valid-guid\"}}\"";

    fn rel() -> Value {
        json!({"app": {"data": {"guid": APP}}})
    }

    #[test]
    fn docker_create() {
        let request = create(json!({
            "type": "docker",
            "relationships": rel(),
            "data": {"image": "registry.example.org/team/web:1.4", "username": "deployer", "password": "s3cret"},
            "metadata": {"labels": {"release": "stable"}}
        }))
        .unwrap();
        assert_eq!(
            request,
            CreateRequest {
                package_type: PackageType::Docker,
                app_guid: Some(APP.into()),
                docker: Some(DockerData {
                    image: "registry.example.org/team/web:1.4".into(),
                    username: Some("deployer".into()),
                    password: Some("s3cret".into()),
                }),
                metadata: MetadataUpdate {
                    labels: vec![(MetadataKey::from_raw("release"), Some("stable".into()))],
                    annotations: vec![],
                },
            }
        );
        let plain = create(json!({
            "type": "docker",
            "relationships": rel(),
            "data": {"image": "nginx", "username": null, "password": null}
        }))
        .unwrap();
        assert_eq!(
            plain.docker,
            Some(DockerData {
                image: "nginx".into(),
                username: None,
                password: None
            })
        );
    }

    #[test]
    fn bits_create() {
        for data in [None, Some(json!(null)), Some(json!({}))] {
            let mut body = json!({"type": "bits", "relationships": rel()});
            if let Some(data) = data {
                body["data"] = data;
            }
            let request = create(body).unwrap();
            assert_eq!(request.package_type, PackageType::Bits);
            assert_eq!(request.app_guid.as_deref(), Some(APP));
            assert_eq!(request.docker, None);
            assert!(request.metadata.is_empty());
        }
        // `data: null` names no app: valid here, 422 App is invalid at lookup.
        let request =
            create(json!({"type": "bits", "relationships": {"app": {"data": null}}})).unwrap();
        assert_eq!(request.app_guid, None);
    }

    #[test]
    fn docker_data_texts() {
        let docker = |data: Value| {
            create_errors(json!({"type": "docker", "relationships": rel(), "data": data}))
        };
        assert_eq!(
            create_errors(json!({"type": "docker", "relationships": rel()})),
            "Data Image must be a string, Data Image required"
        );
        assert_eq!(
            docker(json!({})),
            "Data Image must be a string, Data Image required"
        );
        assert_eq!(docker(json!({"image": 5})), "Data Image must be a string");
        assert_eq!(
            docker(json!({"image": "i".repeat(2049), "username": "u".repeat(256)})),
            "Data Image is too long (maximum is 2048 characters), Data Username is too long (maximum is 255 characters)"
        );
        assert!(create(json!({"type": "docker", "relationships": rel(), "data": {"image": "i".repeat(2048), "username": "u".repeat(255)}})).is_ok());
        assert_eq!(
            update_errors(json!({"username": "u".repeat(256)})),
            "Username is too long (maximum is 255 characters)"
        );
        assert_eq!(docker(json!({"image": "  "})), "Data Image required");
        assert_eq!(
            docker(json!({"image": "x", "birthday": 1, "colour": 2})),
            "Data Unknown field(s): 'birthday', 'colour'"
        );
        assert_eq!(
            docker(json!({"image": "x", "username": 1, "password": false})),
            "Data Username must be a string, Data Password must be a string"
        );
        assert_eq!(
            docker(json!({"birthday": 1, "password": []})),
            "Data Image must be a string, Data Image required, Data Unknown field(s): 'birthday', Data Password must be a string"
        );
        assert_eq!(
            docker(json!("nginx")),
            "Data Image must be a string, Data Image required"
        );
    }

    #[test]
    fn bits_data_text() {
        for data in [json!({"a": 1}), json!(""), json!([]), json!(false)] {
            assert_eq!(
                create_errors(json!({"type": "bits", "relationships": rel(), "data": data})),
                "Data Data must be empty if provided for bits packages"
            );
        }
    }

    #[test]
    fn relationship_texts() {
        let with = |relationships: Value| {
            create_errors(json!({"type": "bits", "relationships": relationships}))
        };
        assert_eq!(
            create_errors(json!({"type": "bits"})),
            "Relationships 'relationships' is not an object"
        );
        assert_eq!(
            with(json!("x")),
            "Relationships 'relationships' is not an object"
        );
        assert_eq!(
            with(json!({})),
            "Relationships 'relationships' must include one or more valid relationships"
        );
        assert_eq!(
            with(json!({"space": {}})),
            format!(
                "Relationships Unknown field(s): 'space', Relationships App can't be blank, {STRUCTURE}"
            )
        );
        assert_eq!(
            with(json!({"app": {"data": {"guid": APP}}, "space": 1})),
            "Relationships Unknown field(s): 'space'"
        );
        assert_eq!(
            with(json!({"app": null})),
            format!("Relationships App can't be blank, {STRUCTURE}")
        );
        assert_eq!(
            with(json!({"app": {}})),
            format!("Relationships App can't be blank, {STRUCTURE}")
        );
        for app in [
            json!({"guid": APP}),
            json!({"data": {"guid": APP}, "x": 1}),
            json!({"data": {"guid": APP, "name": "x"}}),
            json!({"data": {"name": "x"}}),
            json!({"data": "x"}),
            json!({"data": []}),
            json!("x"),
        ] {
            assert_eq!(with(json!({ "app": app })), STRUCTURE, "{app}");
        }
        assert_eq!(
            with(json!({"app": {"data": {"guid": 5}}})),
            "Relationships App guid must be a string, Relationships App guid must be between 1 and 200 characters"
        );
        assert_eq!(
            with(json!({"app": {"data": {"guid": ""}}})),
            "Relationships App guid must be between 1 and 200 characters"
        );
        assert_eq!(
            with(json!({"app": {"data": {"guid": "g".repeat(201)}}})),
            "Relationships App guid must be between 1 and 200 characters"
        );
        assert!(create(json!({"type": "bits", "relationships": {"app": {"data": {"guid": "g".repeat(200)}}}})).is_ok());
    }

    #[test]
    fn type_text() {
        for body in [
            json!({"relationships": rel()}),
            json!({"relationships": rel(), "type": "zip"}),
            json!({"relationships": rel(), "type": "Docker"}),
            json!({"relationships": rel(), "type": 1}),
        ] {
            assert_eq!(create_errors(body), "Type must be one of 'bits, docker'");
        }
    }

    #[test]
    fn create_messages_in_cc_order() {
        assert_eq!(
            create_errors(json!({
                "foo": 1,
                "type": "docker",
                "bar": 2,
                "metadata": {"labels": {"b@d": "ok"}},
                "data": {"birthday": "x"},
                "relationships": {}
            })),
            "Metadata label key error: 'b@d' contains invalid characters, Unknown field(s): 'foo', 'bar', Data Image must be a string, Data Image required, Data Unknown field(s): 'birthday', Relationships 'relationships' must include one or more valid relationships"
        );
        assert_eq!(
            create_errors(json!({"metadata": 1})),
            "Metadata must be an object, Relationships 'relationships' is not an object, Type must be one of 'bits, docker'"
        );
        // E2015 keys are unknown to the GA body.
        assert_eq!(
            create_errors(json!({"type": "bits", "relationships": rel(), "url": "x"})),
            "Unknown field(s): 'url'"
        );
    }

    #[test]
    fn copy_reads_only_the_destination_guid() {
        let guid = |body: Value| copy_app_guid(&object(body));
        assert_eq!(
            guid(json!({"relationships": rel(), "type": "ignored", "x": 1})),
            Some(APP.into())
        );
        assert_eq!(guid(json!({})), None);
        assert_eq!(guid(json!({"relationships": "x"})), None);
        assert_eq!(
            guid(json!({"relationships": {"app": {"data": null}}})),
            None
        );
        assert_eq!(
            guid(json!({"relationships": {"app": {"data": {"guid": 5}}}})),
            None
        );
    }

    #[test]
    fn updates() {
        assert_eq!(parse_update(&Map::new()), Ok(UpdateRequest::default()));
        let request = parse_update(&object(json!({
            "metadata": {"labels": {"env": "prod", "old": null}, "annotations": {"note": "rolled out 5 Jan"}},
            "username": "deployer",
            "password": null
        })))
        .unwrap();
        assert_eq!(request.username.as_deref(), Some("deployer"));
        assert_eq!(request.password, None);
        assert!(request.changes_credentials());
        assert_eq!(request.metadata.labels.len(), 2);
        assert_eq!(request.metadata.annotations.len(), 1);
        let metadata_only =
            parse_update(&object(json!({"metadata": {}, "username": null}))).unwrap();
        assert!(!metadata_only.changes_credentials());
        assert!(
            parse_update(&object(json!({"password": ""})))
                .unwrap()
                .changes_credentials()
        );
    }

    #[test]
    fn update_messages_in_cc_order() {
        assert_eq!(
            update_errors(json!({"password": 1, "foo": 1, "username": {}, "metadata": {"bar": 1}})),
            "Metadata has unexpected field(s): 'bar', Unknown field(s): 'foo', Username must be a string, Password must be a string"
        );
        assert_eq!(
            update_errors(json!({"type": "docker"})),
            "Unknown field(s): 'type'"
        );
    }

    #[test]
    fn password_checks() {
        assert_eq!(check_password(None, false), Ok(()));
        assert_eq!(check_password(Some("x"), true), Ok(()));
        assert_eq!(check_password(Some(&"é".repeat(5000)), true), Ok(()));
        assert_eq!(
            check_password(Some(&"p".repeat(5001)), false)
                .unwrap_err()
                .to_string(),
            "docker_password can be up to 5,000 characters"
        );
        assert_eq!(
            check_password(Some("x"), false).unwrap_err().to_string(),
            "Docker credentials cannot be stored: packages.encryption_key is not configured"
        );
    }
}
