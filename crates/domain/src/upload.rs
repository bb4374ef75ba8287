//! The two forms an upload request takes, and their validation texts.
//!
//! * multipart with a `bits` file part and/or GA's `resources` part (the fingerprints of
//!   files the client leaves to the resource pool);
//! * the E2015 form `bits_name` + `bits_path` that a front proxy (nginx upload module)
//!   sends after storing the file itself.

use crate::resources::{self, Fingerprint};
use crate::validation::Invalid;

pub use crate::resources::RESOURCES_NOT_JSON;

pub const BITS_PATH_REQUIRED: &str = "Bits path An application zip file must be uploaded";
pub const BITS_PATH_INVALID: &str = "Bits path is invalid";
pub const BITS_OR_RESOURCES_REQUIRED: &str = "Upload must include either resources or bits";

/// Validates the proxy form; returns the `bits_path` it names.
pub fn bits_path_form(fields: &[(String, String)]) -> Result<String, Invalid> {
    let mut unknown: Vec<String> = Vec::new();
    for (key, _) in fields {
        let quoted = format!("'{key}'");
        if key != "bits_path" && key != "bits_name" && !unknown.contains(&quoted) {
            unknown.push(quoted);
        }
    }
    let path = fields
        .iter()
        .rev()
        .find(|(k, _)| k == "bits_path")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty());
    let mut errors = Vec::new();
    if !unknown.is_empty() {
        errors.push(format!("Unknown field(s): {}", unknown.join(", ")));
    }
    match path {
        Some(p) if errors.is_empty() => Ok(p.to_owned()),
        Some(_) => Err(Invalid(errors)),
        None => {
            errors.push(BITS_PATH_REQUIRED.into());
            Err(Invalid(errors))
        }
    }
}

/// What a multipart upload carried besides the bits themselves.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MultipartSummary {
    pub has_bits: bool,
    /// Names of parts other than `bits` and `resources`, in order.
    pub unknown_fields: Vec<String>,
    /// Raw value of the `resources` part (GA clients send the matched-resources list).
    pub resources: Option<String>,
}

/// Validates a multipart upload once its parts have been read, and returns the
/// fingerprints of its `resources` part (empty when absent or `[]`). A `resources` value
/// that is not a JSON array of objects is refused on its own, before the other rules, as
/// CC does; then unknown parts, then an upload with neither bits nor resources. Nothing
/// else about the fingerprints is judged here: the worker checks them
/// ([`resources::check_all`]).
pub fn multipart_resources(summary: &MultipartSummary) -> Result<Vec<Fingerprint>, Invalid> {
    let fingerprints = match &summary.resources {
        Some(raw) => resources::parse_upload_resources(raw)?,
        None => Vec::new(),
    };
    let mut errors = Vec::new();
    if !summary.unknown_fields.is_empty() {
        let quoted: Vec<String> = summary
            .unknown_fields
            .iter()
            .map(|f| format!("'{f}'"))
            .collect();
        errors.push(format!("Unknown field(s): {}", quoted.join(", ")));
    }
    if !summary.has_bits && fingerprints.is_empty() {
        errors.push(BITS_OR_RESOURCES_REQUIRED.into());
    }
    if errors.is_empty() {
        Ok(fingerprints)
    } else {
        Err(Invalid(errors))
    }
}

/// [`multipart_resources`] for callers that only need the verdict.
pub fn multipart(summary: &MultipartSummary) -> Result<(), Invalid> {
    multipart_resources(summary).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Result<String, String> {
        let fields: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        bits_path_form(&fields).map_err(|e| e.to_string())
    }

    #[test]
    fn proxy_form() {
        assert_eq!(
            form(&[("bits_name", "app.zip"), ("bits_path", "/tmp/x")]),
            Ok("/tmp/x".into())
        );
        assert_eq!(form(&[]), Err(BITS_PATH_REQUIRED.into()));
        assert_eq!(form(&[("bits_path", " ")]), Err(BITS_PATH_REQUIRED.into()));
        assert_eq!(
            form(&[("resources", "[]"), ("bits_path", "/x")]),
            Err("Unknown field(s): 'resources'".into())
        );
        assert_eq!(
            form(&[("resources", "[]")]),
            Err(format!(
                "Unknown field(s): 'resources', {BITS_PATH_REQUIRED}"
            ))
        );
    }

    #[test]
    fn multipart_rules() {
        let ok = MultipartSummary {
            has_bits: true,
            ..Default::default()
        };
        assert_eq!(multipart_resources(&ok), Ok(vec![]));
        let with_empty_resources = MultipartSummary {
            resources: Some("[]".into()),
            ..ok.clone()
        };
        assert_eq!(multipart_resources(&with_empty_resources), Ok(vec![]));
        let bad_json = MultipartSummary {
            resources: Some("[".into()),
            ..ok.clone()
        };
        assert_eq!(
            multipart(&bad_json).unwrap_err().to_string(),
            RESOURCES_NOT_JSON
        );
        let nothing = MultipartSummary {
            unknown_fields: vec!["foo".into()],
            ..Default::default()
        };
        assert_eq!(
            multipart(&nothing).unwrap_err().to_string(),
            format!("Unknown field(s): 'foo', {BITS_OR_RESOURCES_REQUIRED}")
        );
    }

    #[test]
    fn resources_go_with_or_without_bits() {
        let resources = r#"[{"checksum":{"value":"a9993e364706816aba3e25717850c26c9cd0d89d"},"size_in_bytes":3,"path":"abc.txt","mode":"644"},{"sha1":"x","fn":"../evil"}]"#;
        let with_bits = MultipartSummary {
            has_bits: true,
            resources: Some(resources.into()),
            ..Default::default()
        };
        let fingerprints = multipart_resources(&with_bits).unwrap();
        assert_eq!(fingerprints.len(), 2);
        // Paths and modes are the worker's to judge.
        assert_eq!(fingerprints[1].path, serde_json::json!("../evil"));
        let alone = MultipartSummary {
            has_bits: false,
            ..with_bits.clone()
        };
        assert_eq!(multipart_resources(&alone), Ok(fingerprints));
        for missing in [None, Some("[]")] {
            let summary = MultipartSummary {
                resources: missing.map(str::to_owned),
                ..Default::default()
            };
            assert_eq!(
                multipart(&summary).unwrap_err().to_string(),
                BITS_OR_RESOURCES_REQUIRED
            );
        }
    }

    #[test]
    fn resources_must_be_an_array_of_objects() {
        for raw in ["{}", "\"x\"", "[1]", "null", ""] {
            let summary = MultipartSummary {
                has_bits: true,
                unknown_fields: vec!["foo".into()],
                resources: Some(raw.into()),
            };
            // Refused before anything else, as CC does.
            assert_eq!(
                multipart(&summary).unwrap_err().to_string(),
                RESOURCES_NOT_JSON,
                "{raw:?}"
            );
        }
        assert_eq!(RESOURCES_NOT_JSON, "Resources must be valid JSON.");
    }
}
