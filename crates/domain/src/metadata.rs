//! Labels and annotations (GA metadata): their keys, the rules Cloud Controller checks
//! them by, and how an update merges into what a package already has.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::validation::is_blank;

/// Most labels one package may carry (CC's `max_labels_per_resource`).
pub const MAX_LABELS: usize = 50;
/// Most annotations one package may carry (CC's `max_annotations_per_resource`).
pub const MAX_ANNOTATIONS: usize = 200;

/// A label or annotation key, `[prefix/]name`, as given (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetadataKey {
    pub prefix: Option<String>,
    pub name: String,
}

impl fmt::Display for MetadataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            Some(prefix) => write!(f, "{prefix}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A package's labels and annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub labels: BTreeMap<MetadataKey, String>,
    pub annotations: BTreeMap<MetadataKey, String>,
}

/// What a create or PATCH body asks for: each key set to a value, or deleted (`None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataUpdate {
    pub labels: Vec<(MetadataKey, Option<String>)>,
    pub annotations: Vec<(MetadataKey, Option<String>)>,
}

/// An update that would leave a package with more labels or annotations than allowed.
/// `requested` is the number the request named (CC's `<n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetadataLimit {
    #[error("Failed to add {requested} labels because it would exceed maximum of {MAX_LABELS}")]
    Labels { requested: usize },
    #[error(
        "Failed to add {requested} annotations because it would exceed maximum of {MAX_ANNOTATIONS}"
    )]
    Annotations { requested: usize },
}

/// Longest label value, and longest key name (CC's `MAX_LABEL_VALUE_SIZE`,
/// `MAX_METADATA_KEY_SIZE`).
pub const MAX_NAME_CHARS: usize = 63;
/// Longest key prefix (CC's `MAX_METADATA_PREFIX_SIZE`).
pub const MAX_PREFIX_CHARS: usize = 253;
/// Longest annotation value (CC's `MAX_ANNOTATION_VALUE_SIZE`).
pub const MAX_ANNOTATION_VALUE_CHARS: usize = 5000;
const RESERVED_PREFIX: &str = "cloudfoundry.org";

impl MetadataKey {
    /// Splits a raw key the way CC stores it (`MetadataHelpers.extract_prefix`): without a
    /// `/` there is no prefix; otherwise the first two `/`-separated parts, trailing empty
    /// parts dropped as Ruby's `split` does. Validated keys have at most one `/`; the
    /// annotation keys CC leaves unchecked (blank values) may not.
    pub fn from_raw(raw: &str) -> MetadataKey {
        if !raw.contains('/') {
            return MetadataKey {
                prefix: None,
                name: raw.to_owned(),
            };
        }
        let parts = ruby_split(raw, '/');
        MetadataKey {
            prefix: parts.first().map(|p| (*p).to_owned()),
            name: parts.get(1).map(|n| (*n).to_owned()).unwrap_or_default(),
        }
    }

    /// A key that passes the rules of [`key_error`].
    pub fn parse(raw: &str) -> Result<MetadataKey, String> {
        match key_error(raw) {
            Some(message) => Err(message),
            None => Ok(MetadataKey::from_raw(raw)),
        }
    }
}

/// Ruby's `String#split(sep)`: trailing empty fields are dropped (`"a/"` → `["a"]`).
pub(crate) fn ruby_split(raw: &str, sep: char) -> Vec<&str> {
    let mut parts: Vec<&str> = raw.split(sep).collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

/// Ruby's `blank?` for a string.
fn is_blank_str(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// The first `n` characters, as CC quotes an over-long key or value (`name[0...8]`).
fn head(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(at, _)| &s[..at])
}

/// One DNS label: `[a-z0-9]`, or alphanumerics around inner `-`, at most 63 characters.
fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// CC's `DomainDecorator::DOMAIN_REGEX`: two or more dot-separated labels.
fn is_dns_name(prefix: &str) -> bool {
    prefix.contains('.') && prefix.split('.').all(is_dns_label)
}

fn has_only_name_characters(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn starts_and_ends_alphanumeric(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alnum(s.chars().next()) && alnum(s.chars().next_back())
}

/// The rules a key name and a label value share, first failure only.
fn name_error(s: &str) -> Option<String> {
    if !has_only_name_characters(s) {
        Some(format!("'{s}' contains invalid characters"))
    } else if !starts_and_ends_alphanumeric(s) {
        Some(format!("'{s}' starts or ends with invalid characters"))
    } else if s.chars().count() > MAX_NAME_CHARS {
        Some(format!(
            "'{}...' is greater than {MAX_NAME_CHARS} characters",
            head(s, 8)
        ))
    } else {
        None
    }
}

/// The first rule a label or annotation key breaks, in CC's order, without the
/// `label key error: ` prefix (label selectors show the text alone).
pub fn key_error(raw: &str) -> Option<String> {
    if is_blank_str(raw) {
        return Some("key cannot be empty string".into());
    }
    if raw.matches('/').count() > 1 {
        return Some("key has more than one '/'".into());
    }
    let MetadataKey { prefix, name } = MetadataKey::from_raw(raw);
    if let Some(prefix) = &prefix {
        if !is_dns_name(prefix) {
            return Some(format!("prefix '{prefix}' must be in valid dns format"));
        }
        if prefix.chars().count() > MAX_PREFIX_CHARS {
            return Some(format!(
                "prefix '{}...' is greater than {MAX_PREFIX_CHARS} characters",
                head(prefix, 8)
            ));
        }
        if prefix.eq_ignore_ascii_case(RESERVED_PREFIX) {
            return Some(format!("prefix '{RESERVED_PREFIX}' is reserved"));
        }
    }
    if is_blank_str(&name) {
        return Some("key cannot be empty string".into());
    }
    name_error(&name)
}

/// The first rule a label value breaks, without the `label value error: ` prefix. An
/// empty value is allowed.
pub fn label_value_error(value: &str) -> Option<String> {
    if value.is_empty() {
        None
    } else {
        name_error(value)
    }
}

/// The rule an annotation value can break (its length), without the
/// `annotation value error: ` prefix.
pub fn annotation_value_error(value: &str) -> Option<String> {
    (value.chars().count() > MAX_ANNOTATION_VALUE_CHARS).then(|| {
        format!(
            "'{}...' is greater than {MAX_ANNOTATION_VALUE_CHARS} characters",
            head(value, 8)
        )
    })
}

/// A metadata value as stored: `null` deletes (`None`); a string is itself; any other
/// JSON value is taken as its JSON text (`5` → `"5"`).
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Validates a body's `metadata` value (given only when the body has the key) as CC's
/// `MetadataValidator` does. Each message is complete (`Metadata label key error: …`),
/// in CC's order: shape, unexpected keys, then every label, then every annotation.
pub fn parse(value: &Value) -> Result<MetadataUpdate, Vec<String>> {
    let Value::Object(metadata) = value else {
        return Err(vec!["Metadata must be an object".into()]);
    };
    let mut errors = Vec::new();
    let unexpected: Vec<String> = metadata
        .keys()
        .filter(|k| *k != "labels" && *k != "annotations")
        .map(|k| format!("'{k}'"))
        .collect();
    if !unexpected.is_empty() {
        errors.push(format!(
            "Metadata has unexpected field(s): {}",
            unexpected.join(" ")
        ));
    }
    let mut update = MetadataUpdate::default();
    // CC skips the rules for a `null` or `false` map (`validate_labels if labels`) and its
    // update treats them as empty.
    match metadata.get("labels") {
        None | Some(Value::Null | Value::Bool(false)) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                let text = value_text(value);
                if let Some(message) = key_error(key) {
                    errors.push(format!("Metadata label key error: {message}"));
                }
                if let Some(message) = text.as_deref().and_then(label_value_error) {
                    errors.push(format!("Metadata label value error: {message}"));
                }
                update.labels.push((MetadataKey::from_raw(key), text));
            }
        }
        Some(_) => errors.push("Metadata 'labels' is not an object".into()),
    }
    match metadata.get("annotations") {
        None | Some(Value::Null | Value::Bool(false)) => {}
        Some(Value::Object(annotations)) => {
            for (key, value) in annotations {
                let text = value_text(value);
                // CC checks an annotation's key only when its value is `present?`.
                if !is_blank(Some(value))
                    && let Some(message) = key_error(key)
                {
                    errors.push(format!("Metadata annotation key error: {message}"));
                }
                if let Some(message) = text.as_deref().and_then(annotation_value_error) {
                    errors.push(format!("Metadata annotation value error: {message}"));
                }
                update.annotations.push((MetadataKey::from_raw(key), text));
            }
        }
        Some(_) => errors.push("Metadata 'annotations' is not an object".into()),
    }
    if errors.is_empty() {
        Ok(update)
    } else {
        Err(errors)
    }
}

impl Metadata {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }

    /// How many characters its keys (prefix and name) and values hold together: how large
    /// it is to load and render, whatever the encoding.
    pub fn characters(&self) -> u64 {
        self.labels
            .iter()
            .chain(&self.annotations)
            .map(|(key, value)| {
                let prefix = key.prefix.as_deref().unwrap_or("");
                [prefix, key.name.as_str(), value.as_str()]
                    .iter()
                    .map(|text| text.chars().count() as u64)
                    .sum::<u64>()
            })
            .sum()
    }

    /// `{"labels": {…}, "annotations": {…}}` as a package body shows them, keys with a
    /// prefix as `prefix/name`.
    pub fn to_json(&self) -> Value {
        let render = |map: &BTreeMap<MetadataKey, String>| {
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
                    .collect(),
            )
        };
        serde_json::json!({
            "labels": render(&self.labels),
            "annotations": render(&self.annotations),
        })
    }
}

impl MetadataUpdate {
    /// Nothing to set or delete.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }

    /// Merges the update into `current`: a value sets its key, `None` deletes it, keys not
    /// named are kept. As in CC, a map fails its limit only when the update grows it past
    /// the maximum (labels are judged first); `requested` counts the request's entries.
    pub fn apply(&self, current: &Metadata) -> Result<Metadata, MetadataLimit> {
        let labels = merge(&current.labels, &self.labels);
        if labels.len() > current.labels.len() && labels.len() > MAX_LABELS {
            return Err(MetadataLimit::Labels {
                requested: self.labels.len(),
            });
        }
        let annotations = merge(&current.annotations, &self.annotations);
        if annotations.len() > current.annotations.len() && annotations.len() > MAX_ANNOTATIONS {
            return Err(MetadataLimit::Annotations {
                requested: self.annotations.len(),
            });
        }
        Ok(Metadata {
            labels,
            annotations,
        })
    }
}

fn merge(
    current: &BTreeMap<MetadataKey, String>,
    changes: &[(MetadataKey, Option<String>)],
) -> BTreeMap<MetadataKey, String> {
    let mut merged = current.clone();
    for (key, value) in changes {
        match value {
            Some(value) => {
                merged.insert(key.clone(), value.clone());
            }
            None => {
                merged.remove(key);
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(metadata: Value) -> Vec<String> {
        parse(&metadata).unwrap_err()
    }

    fn key(prefix: Option<&str>, name: &str) -> MetadataKey {
        MetadataKey {
            prefix: prefix.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    #[test]
    fn key_rules_in_cloud_controller_order() {
        let e = |raw: &str| key_error(raw);
        assert_eq!(e(""), Some("key cannot be empty string".into()));
        assert_eq!(e("  "), Some("key cannot be empty string".into()));
        assert_eq!(e("a/b/c"), Some("key has more than one '/'".into()));
        assert_eq!(
            e("onlycom/x"),
            Some("prefix 'onlycom' must be in valid dns format".into())
        );
        assert_eq!(
            e("/x"),
            Some("prefix '' must be in valid dns format".into())
        );
        assert_eq!(
            e("-a.com/x"),
            Some("prefix '-a.com' must be in valid dns format".into())
        );
        assert_eq!(
            e("a..com/x"),
            Some("prefix 'a..com' must be in valid dns format".into())
        );
        let long_label = format!("{}.com/x", "a".repeat(64));
        assert!(e(&long_label).is_some_and(|m| m.ends_with("must be in valid dns format")));
        let long_prefix = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        assert_eq!(
            e(&format!("{long_prefix}/x")),
            Some("prefix 'aaaaaaaa...' is greater than 253 characters".into())
        );
        assert_eq!(
            e("cloudfoundry.org/x"),
            Some("prefix 'cloudfoundry.org' is reserved".into())
        );
        assert_eq!(
            e("CloudFoundry.ORG/x"),
            Some("prefix 'cloudfoundry.org' is reserved".into())
        );
        assert_eq!(e("example.com/"), Some("key cannot be empty string".into()));
        assert_eq!(e("/"), Some("key cannot be empty string".into()));
        assert_eq!(e("b@d"), Some("'b@d' contains invalid characters".into()));
        assert_eq!(
            e("example.com/a b"),
            Some("'a b' contains invalid characters".into())
        );
        assert_eq!(
            e("_x"),
            Some("'_x' starts or ends with invalid characters".into())
        );
        assert_eq!(
            e("x."),
            Some("'x.' starts or ends with invalid characters".into())
        );
        assert_eq!(
            e(&"k".repeat(64)),
            Some("'kkkkkkkk...' is greater than 63 characters".into())
        );
        assert_eq!(e(&"k".repeat(63)), None);
        assert_eq!(e("Example.COM/My_key-1.x"), None);
        assert_eq!(e("a"), None);
        assert_eq!(e("é"), Some("'é' contains invalid characters".into()));
    }

    #[test]
    fn value_rules() {
        assert_eq!(label_value_error(""), None);
        assert_eq!(label_value_error("prod-1.2_x"), None);
        assert_eq!(
            label_value_error("a b"),
            Some("'a b' contains invalid characters".into())
        );
        assert_eq!(
            label_value_error(" "),
            Some("' ' contains invalid characters".into())
        );
        assert_eq!(
            label_value_error("-a"),
            Some("'-a' starts or ends with invalid characters".into())
        );
        assert_eq!(
            label_value_error(&"v".repeat(64)),
            Some("'vvvvvvvv...' is greater than 63 characters".into())
        );
        assert_eq!(annotation_value_error(&"é".repeat(5000)), None);
        assert_eq!(
            annotation_value_error(&"é".repeat(5001)),
            Some("'éééééééé...' is greater than 5000 characters".into())
        );
    }

    #[test]
    fn keys_split_like_cloud_controller() {
        assert_eq!(MetadataKey::from_raw("env"), key(None, "env"));
        assert_eq!(
            MetadataKey::from_raw("example.com/team"),
            key(Some("example.com"), "team")
        );
        assert_eq!(MetadataKey::from_raw("a/b/c"), key(Some("a"), "b"));
        assert_eq!(MetadataKey::from_raw("a/"), key(Some("a"), ""));
        assert_eq!(MetadataKey::from_raw("/"), key(None, ""));
        assert_eq!(
            MetadataKey::from_raw("example.com/team").to_string(),
            "example.com/team"
        );
        assert_eq!(
            MetadataKey::parse("example.com/team"),
            Ok(key(Some("example.com"), "team"))
        );
        assert_eq!(
            MetadataKey::parse("a/b/c"),
            Err("key has more than one '/'".into())
        );
    }

    #[test]
    fn shape() {
        assert_eq!(errors(json!(null)), ["Metadata must be an object"]);
        assert_eq!(errors(json!([])), ["Metadata must be an object"]);
        assert_eq!(
            errors(json!({"foo": 1, "labels": {}, "bar": 2})),
            ["Metadata has unexpected field(s): 'foo' 'bar'"]
        );
        assert_eq!(
            errors(json!({"labels": [], "annotations": "x"})),
            [
                "Metadata 'labels' is not an object",
                "Metadata 'annotations' is not an object"
            ]
        );
        assert_eq!(parse(&json!({})), Ok(MetadataUpdate::default()));
        assert_eq!(
            parse(&json!({"labels": null, "annotations": false})),
            Ok(MetadataUpdate::default())
        );
    }

    #[test]
    fn every_failing_key_and_value_is_reported() {
        assert_eq!(
            errors(json!({"labels": {"b@d": "ok"}})),
            ["Metadata label key error: 'b@d' contains invalid characters"]
        );
        assert_eq!(
            errors(json!({
                "foo": true,
                "labels": {"b@d": "a b", "ok": "fine", "cloudfoundry.org/x": "-x"},
                "annotations": {"b@d": "x", "blank@key": "", "long": "y".repeat(5001)}
            })),
            [
                "Metadata has unexpected field(s): 'foo'",
                "Metadata label key error: 'b@d' contains invalid characters",
                "Metadata label value error: 'a b' contains invalid characters",
                "Metadata label key error: prefix 'cloudfoundry.org' is reserved",
                "Metadata label value error: '-x' starts or ends with invalid characters",
                "Metadata annotation key error: 'b@d' contains invalid characters",
                "Metadata annotation value error: 'yyyyyyyy...' is greater than 5000 characters",
            ]
        );
    }

    #[test]
    fn values_are_strings_null_or_json_text() {
        let update = parse(&json!({
            "labels": {"env": "prod", "old": null, "n": 5, "t": true},
            "annotations": {"note": "any text, even spaces", "gone": null, "f": 1.5}
        }))
        .unwrap();
        assert_eq!(
            update.labels,
            vec![
                (key(None, "env"), Some("prod".into())),
                (key(None, "old"), None),
                (key(None, "n"), Some("5".into())),
                (key(None, "t"), Some("true".into())),
            ]
        );
        assert_eq!(
            update.annotations,
            vec![
                (key(None, "note"), Some("any text, even spaces".into())),
                (key(None, "gone"), None),
                (key(None, "f"), Some("1.5".into())),
            ]
        );
        // JSON text is then checked like a string.
        assert_eq!(
            errors(json!({"labels": {"a": ["x"]}})),
            ["Metadata label value error: '[\"x\"]' contains invalid characters"]
        );
        // A null label value is a deletion: no value rules.
        assert!(parse(&json!({"labels": {"a": null}})).is_ok());
        // Annotation keys are checked only for values CC calls present.
        assert!(parse(&json!({"annotations": {"b@d": null, "x@y": "  ", "z@": false}})).is_ok());
        assert_eq!(
            errors(json!({"annotations": {"b@d": 0}})),
            ["Metadata annotation key error: 'b@d' contains invalid characters"]
        );
    }

    fn metadata(labels: usize, annotations: usize) -> Metadata {
        let keys = |n: usize, p: &str| {
            (0..n)
                .map(|i| (key(None, &format!("{p}{i}")), "v".to_string()))
                .collect()
        };
        Metadata {
            labels: keys(labels, "l"),
            annotations: keys(annotations, "a"),
        }
    }

    #[test]
    fn updates_merge() {
        let current = Metadata {
            labels: [
                (key(None, "env"), "dev".to_string()),
                (key(None, "old"), "x".to_string()),
                (key(None, "keep"), "k".to_string()),
            ]
            .into(),
            annotations: [(key(Some("example.com"), "note"), "n".to_string())].into(),
        };
        let update = parse(&json!({
            "labels": {"env": "prod", "old": null, "missing": null},
            "annotations": {"example.com/note": "rolled out 5 Jan"}
        }))
        .unwrap();
        let next = update.apply(&current).unwrap();
        assert_eq!(
            next.labels,
            [
                (key(None, "env"), "prod".to_string()),
                (key(None, "keep"), "k".to_string()),
            ]
            .into()
        );
        assert_eq!(
            next.to_json(),
            json!({
                "labels": {"env": "prod", "keep": "k"},
                "annotations": {"example.com/note": "rolled out 5 Jan"}
            })
        );
        assert!(Metadata::default().is_empty());
        assert!(!next.is_empty());
        // env prod, keep k; example.com note "rolled out 5 Jan".
        assert_eq!(next.characters(), 3 + 4 + 4 + 1 + 11 + 4 + 16);
        assert_eq!(Metadata::default().characters(), 0);
        let accented = Metadata {
            labels: [(key(None, "é"), "ü".to_string())].into(),
            annotations: BTreeMap::new(),
        };
        assert_eq!(accented.characters(), 2, "characters, not bytes");
        assert!(MetadataUpdate::default().is_empty());
        assert_eq!(
            MetadataUpdate::default().apply(&current),
            Ok(current.clone())
        );
    }

    #[test]
    fn limits() {
        let labels = |n: usize| MetadataUpdate {
            labels: (0..n)
                .map(|i| (key(None, &format!("new{i}")), Some("v".into())))
                .collect(),
            annotations: vec![],
        };
        assert!(labels(50).apply(&Metadata::default()).is_ok());
        let err = labels(51).apply(&Metadata::default()).unwrap_err();
        assert_eq!(err, MetadataLimit::Labels { requested: 51 });
        assert_eq!(
            err.to_string(),
            "Failed to add 51 labels because it would exceed maximum of 50"
        );
        assert_eq!(
            labels(2).apply(&metadata(49, 0)).unwrap_err().to_string(),
            "Failed to add 2 labels because it would exceed maximum of 50"
        );
        // Replacing or deleting never fails, even at the limit.
        let mut at_limit = metadata(50, 0);
        let replace = MetadataUpdate {
            labels: vec![
                (key(None, "l0"), Some("w".into())),
                (key(None, "l1"), None),
                (key(None, "extra"), Some("v".into())),
            ],
            annotations: vec![],
        };
        at_limit = replace.apply(&at_limit).unwrap();
        assert_eq!(at_limit.labels.len(), 50);
        let annotations = MetadataUpdate {
            labels: vec![],
            annotations: vec![
                (key(None, "x"), Some("v".into())),
                (key(None, "a0"), None),
                (key(None, "y"), Some("v".into())),
                (key(None, "z"), Some("v".into())),
            ],
        };
        assert_eq!(
            annotations
                .apply(&metadata(0, 199))
                .unwrap_err()
                .to_string(),
            "Failed to add 4 annotations because it would exceed maximum of 200"
        );
        assert!(annotations.apply(&metadata(0, 198)).is_ok());
        // Labels are judged first.
        let both = MetadataUpdate {
            labels: labels(51).labels,
            annotations: annotations.annotations.clone(),
        };
        assert_eq!(
            both.apply(&metadata(0, 199)),
            Err(MetadataLimit::Labels { requested: 51 })
        );
    }
}
