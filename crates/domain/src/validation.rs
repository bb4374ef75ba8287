//! Request bodies: parsing and the validation rules of Cloud Controller's messages, with
//! its exact texts. Every failing rule is reported at once, joined with ", ".

use serde_json::{Map, Value};

use crate::package::PackageType;

/// A request body that is not what the endpoint takes; each entry is one full message
/// such as `Type must be one of 'bits, docker'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join(", "))]
pub struct Invalid(pub Vec<String>);

impl Invalid {
    pub fn one(message: impl Into<String>) -> Self {
        Invalid(vec![message.into()])
    }
}

/// A body that is not a JSON object. The text is what follows
/// `Request invalid due to parse error: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Parses a JSON request body that must be an object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError("invalid request body".into()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError("invalid request body".into())),
        Err(e) => Err(ParseError(e.to_string())),
    }
}

/// Parses a GA request body that must be an object. GA names no parser detail: anything
/// that is not a JSON object is `invalid request body`.
pub fn parse_ga_object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    parse_object(body).map_err(|_| ParseError("invalid request body".into()))
}

/// `Unknown field(s): 'a', 'b'` for the keys of `body` not in `allowed`, in body order.
pub fn unknown_fields(body: &Map<String, Value>, allowed: &[&str]) -> Option<String> {
    let unknown: Vec<String> = body
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("'{k}'"))
        .collect();
    (!unknown.is_empty()).then(|| format!("Unknown field(s): {}", unknown.join(", ")))
}

/// Ruby's `blank?`: null, false, an empty or all-whitespace string, an empty array or
/// object.
pub fn is_blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

/// What an E2015 `POST /v3/apps/:guid/packages` body asks for.
/// Longest docker image reference accepted. Real references stay far below (a registry
/// host of at most 253 characters, a repository of 255, a tag of 128, a digest of 71);
/// the bound keeps every stored package, and so every list page, small.
pub const MAX_DOCKER_URL: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageCreate {
    pub package_type: PackageType,
    /// Docker image reference (docker packages only).
    pub url: Option<String>,
}

/// Applies the rules of Cloud Controller's E2015 `PackageCreateMessage`. `app_guid` is the
/// GUID from the path, which overrides any `app_guid` in the body.
pub fn package_create(app_guid: &str, body: &Map<String, Value>) -> Result<PackageCreate, Invalid> {
    let mut errors = Vec::new();
    if let Some(unknown) = unknown_fields(body, &["type", "url", "data", "app_guid"]) {
        errors.push(unknown);
    }
    let guid_len = app_guid.chars().count();
    if !(1..=200).contains(&guid_len) {
        errors.push("App guid must be between 1 and 200 characters".into());
    }
    let package_type = match body.get("type") {
        Some(Value::String(t)) => t.parse::<PackageType>().ok(),
        _ => None,
    };
    let url = body.get("url");
    match package_type {
        None => errors.push("Type must be one of 'bits, docker'".into()),
        Some(PackageType::Bits) => {
            if !is_blank(url) {
                errors.push("Url must be blank when type is bits".into());
            }
            if !matches!(body.get("data"), None | Some(Value::Null))
                && body.get("data") != Some(&Value::Object(Map::new()))
            {
                errors.push("Data data must be empty if provided for bits packages".into());
            }
        }
        Some(PackageType::Docker) => {
            if is_blank(url) {
                errors.push("Url can not be blank when type is docker".into());
            } else if !matches!(url, Some(Value::String(_))) {
                errors.push("Url must be a string".into());
            } else if url
                .and_then(Value::as_str)
                .is_some_and(|u| u.chars().count() > MAX_DOCKER_URL)
            {
                errors.push(format!(
                    "Url is too long (maximum is {MAX_DOCKER_URL} characters)"
                ));
            }
        }
    }
    match (errors.is_empty(), package_type) {
        (true, Some(package_type)) => Ok(PackageCreate {
            package_type,
            url: match (package_type, url) {
                (PackageType::Docker, Some(Value::String(u))) => Some(u.clone()),
                _ => None,
            },
        }),
        _ => Err(Invalid(errors)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn create(body: Value) -> Result<PackageCreate, Invalid> {
        let Value::Object(map) = body else {
            panic!("object expected")
        };
        package_create("app-guid", &map)
    }

    fn messages(body: Value) -> String {
        create(body).unwrap_err().to_string()
    }

    #[test]
    fn docker_urls_are_bounded() {
        let longest = format!("docker://{}", "a".repeat(MAX_DOCKER_URL - 9));
        assert!(create(json!({"type": "docker", "url": longest})).is_ok());
        assert_eq!(
            messages(json!({"type": "docker", "url": format!("{longest}a")})),
            "Url is too long (maximum is 2048 characters)"
        );
    }

    #[test]
    fn bits_and_docker_bodies_are_accepted() {
        assert_eq!(
            create(json!({"type": "bits"})).unwrap(),
            PackageCreate {
                package_type: PackageType::Bits,
                url: None
            }
        );
        assert_eq!(
            create(json!({"type": "bits", "data": {}, "url": ""}))
                .unwrap()
                .package_type,
            PackageType::Bits
        );
        assert_eq!(
            create(json!({"type": "bits", "data": null, "app_guid": "other"}))
                .unwrap()
                .url,
            None
        );
        let docker = create(
            json!({"type": "docker", "url": "docker://cloudfoundry/runtime-ci", "data": {"x": 1}}),
        )
        .unwrap();
        assert_eq!(
            docker.url.as_deref(),
            Some("docker://cloudfoundry/runtime-ci")
        );
    }

    #[test]
    fn cloud_controller_texts() {
        assert_eq!(
            messages(json!({"type": "zip"})),
            "Type must be one of 'bits, docker'"
        );
        assert_eq!(messages(json!({})), "Type must be one of 'bits, docker'");
        assert_eq!(
            messages(json!({"type": 3})),
            "Type must be one of 'bits, docker'"
        );
        assert_eq!(
            messages(json!({"type": "bits", "url": "x"})),
            "Url must be blank when type is bits"
        );
        assert_eq!(
            messages(json!({"type": "docker"})),
            "Url can not be blank when type is docker"
        );
        assert_eq!(
            messages(json!({"type": "docker", "url": "  "})),
            "Url can not be blank when type is docker"
        );
        assert_eq!(
            messages(json!({"type": "bits", "data": {"a": 1}})),
            "Data data must be empty if provided for bits packages"
        );
        assert_eq!(
            messages(json!({"type": "docker", "url": 5})),
            "Url must be a string"
        );
    }

    #[test]
    fn all_failures_are_reported_together_unknown_keys_first() {
        assert_eq!(
            messages(json!({"foo": 1, "type": "bits", "bar": 2, "url": "u"})),
            "Unknown field(s): 'foo', 'bar', Url must be blank when type is bits"
        );
    }

    #[test]
    fn app_guid_length_is_checked() {
        let Value::Object(map) = json!({"type": "bits"}) else {
            unreachable!()
        };
        let long = "a".repeat(201);
        assert_eq!(
            package_create(&long, &map).unwrap_err().to_string(),
            "App guid must be between 1 and 200 characters"
        );
        assert!(package_create(&"a".repeat(200), &map).is_ok());
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert_eq!(parse_object(b"").unwrap_err().0, "invalid request body");
        assert_eq!(parse_object(b"[1]").unwrap_err().0, "invalid request body");
        assert_eq!(
            parse_ga_object(b"{x").unwrap_err().0,
            "invalid request body"
        );
        assert!(parse_ga_object(b"{}").is_ok());
        assert_eq!(
            parse_object(b"\"x\"").unwrap_err().0,
            "invalid request body"
        );
        assert!(parse_object(b"{\"type\":").unwrap_err().0.contains("EOF"));
        assert!(parse_object(b" {} ").is_ok());
    }

    #[test]
    fn blank_follows_ruby() {
        assert!(is_blank(None));
        assert!(is_blank(Some(&json!(null))));
        assert!(is_blank(Some(&json!(" \t"))));
        assert!(is_blank(Some(&json!([]))));
        assert!(is_blank(Some(&json!(false))));
        assert!(!is_blank(Some(&json!(0))));
        assert!(!is_blank(Some(&json!("x"))));
    }
}
