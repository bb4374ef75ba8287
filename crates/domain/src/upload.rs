//! The two forms an upload request takes, and their validation texts.
//!
//! * multipart with a `bits` file part (what clients send when no proxy stores the file);
//! * the E2015 form `bits_name` + `bits_path` that a front proxy (nginx upload module)
//!   sends after storing the file itself.

use crate::validation::Invalid;

pub const BITS_PATH_REQUIRED: &str = "Bits path An application zip file must be uploaded";
pub const BITS_PATH_INVALID: &str = "Bits path is invalid";
pub const BITS_OR_RESOURCES_REQUIRED: &str = "Upload must include either resources or bits";
pub const RESOURCES_NOT_JSON: &str = "Resources must be valid JSON.";
pub const RESOURCES_NOT_CACHED: &str = "Resources must be an empty list: this service keeps no resource cache, so every file must be in bits";

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

/// Validates a multipart upload once its parts have been read.
pub fn multipart(summary: &MultipartSummary) -> Result<(), Invalid> {
    let mut errors = Vec::new();
    if !summary.unknown_fields.is_empty() {
        let quoted: Vec<String> = summary
            .unknown_fields
            .iter()
            .map(|f| format!("'{f}'"))
            .collect();
        errors.push(format!("Unknown field(s): {}", quoted.join(", ")));
    }
    if let Some(raw) = &summary.resources {
        match serde_json::from_str::<serde_json::Value>(raw) {
            Err(_) => errors.push(RESOURCES_NOT_JSON.into()),
            Ok(serde_json::Value::Array(items)) if items.is_empty() => {}
            Ok(_) => errors.push(RESOURCES_NOT_CACHED.into()),
        }
    }
    if !summary.has_bits {
        errors.push(BITS_OR_RESOURCES_REQUIRED.into());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errors))
    }
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
        assert!(multipart(&ok).is_ok());
        let with_empty_resources = MultipartSummary {
            resources: Some("[]".into()),
            ..ok.clone()
        };
        assert!(multipart(&with_empty_resources).is_ok());
        let bad_json = MultipartSummary {
            resources: Some("[".into()),
            ..ok.clone()
        };
        assert_eq!(
            multipart(&bad_json).unwrap_err().to_string(),
            RESOURCES_NOT_JSON
        );
        let matched = MultipartSummary {
            resources: Some("[{\"path\":\"a\"}]".into()),
            ..ok.clone()
        };
        assert_eq!(
            multipart(&matched).unwrap_err().to_string(),
            RESOURCES_NOT_CACHED
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
}
