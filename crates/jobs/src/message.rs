//! The job message, versions 1 and 2. Schemas: `proto/job-message.v1.schema.json` and
//! `proto/job-message.v2.schema.json`.
//!
//! Version 2 adds an upload's resources (GA's resource matching): a version-1 worker would
//! take such an upload for a plain one and misread it, so those messages, and only those,
//! are version 2. Every other message stays version 1, so workers of the previous release
//! keep taking them during a rolling deploy.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The newest version this build writes and reads.
pub const JOB_MESSAGE_VERSION: u32 = 2;
/// Every version this build reads; anything else is dead-lettered unread.
pub const JOB_MESSAGE_VERSIONS: [u32; 2] = [1, 2];

pub use packages_domain::JobKind;
use packages_domain::{BlobKey, PackageGuid};

/// Validate the staged upload, move it to the package key while hashing it, mark the
/// package READY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUpload {
    pub staging_key: BlobKey,
    /// Bytes the API stored; the worker checks it read as many.
    pub size: u64,
    /// Version 2: the fingerprints of files to take from the resource pool, stored as a
    /// JSON array at this key; the worker assembles the package from them and the bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_key: Option<BlobKey>,
    /// Version 2: whether `staging_key` holds uploaded bits (`false`: the upload named
    /// resources only, and nothing is stored there).
    #[serde(default = "uploaded_bits", skip_serializing_if = "is_true")]
    pub bits: bool,
}

impl ProcessUpload {
    /// A plain upload: bits, no resources.
    pub fn bits(staging_key: BlobKey, size: u64) -> ProcessUpload {
        ProcessUpload {
            staging_key,
            size,
            resources_key: None,
            bits: true,
        }
    }
}

fn uploaded_bits() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Copy the bits of `source_package_guid` to the message's package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyBits {
    pub source_package_guid: PackageGuid,
}

/// Delete the blob at `blob_key` (bits of a deleted or expired package).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteBits {
    pub blob_key: BlobKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "args", rename_all = "snake_case")]
pub enum JobPayload {
    ProcessUpload(ProcessUpload),
    CopyBits(CopyBits),
    DeleteBits(DeleteBits),
}

impl JobPayload {
    /// The oldest version that carries this payload.
    pub fn version(&self) -> u32 {
        match self {
            JobPayload::ProcessUpload(upload) if upload.resources_key.is_some() || !upload.bits => {
                2
            }
            _ => 1,
        }
    }

    pub fn kind(&self) -> JobKind {
        match self {
            JobPayload::ProcessUpload(_) => JobKind::ProcessUpload,
            JobPayload::CopyBits(_) => JobKind::CopyBits,
            JobPayload::DeleteBits(_) => JobKind::DeleteBits,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub version: u32,
    /// Id of the job row in the database that this message publishes.
    pub job_id: Uuid,
    pub package_guid: PackageGuid,
    /// `X-VCAP-Request-ID` of the request that caused the job, for log correlation.
    pub request_id: String,
    #[serde(flatten)]
    pub payload: JobPayload,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("job message is not valid JSON: {0}")]
    Malformed(String),
    #[error("job message version {0} is not supported (this worker reads versions 1 and 2)")]
    UnsupportedVersion(u64),
}

impl JobMessage {
    pub fn new(
        job_id: Uuid,
        package_guid: PackageGuid,
        request_id: String,
        payload: JobPayload,
    ) -> Self {
        JobMessage {
            version: payload.version(),
            job_id,
            package_guid,
            request_id,
            payload,
        }
    }

    pub fn kind(&self) -> JobKind {
        self.payload.kind()
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the version first so that a message from a newer producer is refused as such,
    /// not misread as a malformed version-1 message.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u64,
        }
        let versioned: Versioned =
            serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !JOB_MESSAGE_VERSIONS
            .iter()
            .any(|&known| u64::from(known) == versioned.version)
        {
            return Err(DecodeError::UnsupportedVersion(versioned.version));
        }
        let message: JobMessage =
            serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        // A version-1 message with version-2 fields would be misread by older workers:
        // it was not written by this code.
        if message.version < message.payload.version() {
            return Err(DecodeError::Malformed(format!(
                "version {} cannot carry this payload (version {} needed)",
                message.version,
                message.payload.version()
            )));
        }
        Ok(message)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn schema(version: u32) -> Value {
        let path = format!(
            "{}/../../proto/job-message.v{version}.schema.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn samples() -> Vec<JobMessage> {
        let job_id = Uuid::parse_str("6f1c1f3e-8a59-4d5e-9a4b-2c1d0e9f8a7b").unwrap();
        let message =
            |payload| JobMessage::new(job_id, "pkg-guid".into(), "req-1::abc".to_owned(), payload);
        vec![
            message(JobPayload::ProcessUpload(ProcessUpload::bits(
                "staging/pkg-guid/upload".into(),
                1_234_567,
            ))),
            message(JobPayload::CopyBits(CopyBits {
                source_package_guid: "src-guid".into(),
            })),
            message(JobPayload::DeleteBits(DeleteBits {
                blob_key: "packages/pkg-guid".into(),
            })),
            message(JobPayload::ProcessUpload(ProcessUpload {
                staging_key: "staging/pkg-guid/upload".into(),
                size: 4096,
                resources_key: Some("staging/pkg-guid/upload.resources".into()),
                bits: true,
            })),
            message(JobPayload::ProcessUpload(ProcessUpload {
                staging_key: "staging/pkg-guid/upload".into(),
                size: 0,
                resources_key: Some("staging/pkg-guid/upload.resources".into()),
                bits: false,
            })),
        ]
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn strings(value: &Value) -> BTreeSet<String> {
        value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn every_kind_round_trips() {
        let samples = samples();
        let kinds: Vec<JobKind> = samples.iter().map(JobMessage::kind).collect();
        assert_eq!(
            kinds,
            vec![
                JobKind::ProcessUpload,
                JobKind::CopyBits,
                JobKind::DeleteBits,
                JobKind::ProcessUpload,
                JobKind::ProcessUpload,
            ]
        );
        let versions: Vec<u32> = samples.iter().map(|m| m.version).collect();
        assert_eq!(
            versions,
            [1, 1, 1, 2, 2],
            "only uploads with resources are v2"
        );
        for message in samples {
            let decoded = JobMessage::decode(&message.encode()).unwrap();
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn version_one_cannot_carry_resources() {
        let mut value: Value = serde_json::from_slice(&samples()[3].encode()).unwrap();
        value["version"] = Value::from(1);
        let body = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            JobMessage::decode(&body),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn wire_format_is_flat_with_kind_and_args() {
        let message = &samples()[1];
        let value: Value = serde_json::from_slice(&message.encode()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "version": 1,
                "job_id": "6f1c1f3e-8a59-4d5e-9a4b-2c1d0e9f8a7b",
                "package_guid": "pkg-guid",
                "request_id": "req-1::abc",
                "kind": "copy_bits",
                "args": { "source_package_guid": "src-guid" }
            })
        );
    }

    #[test]
    fn other_versions_are_refused_unread() {
        // Version 3 may change anything else; it must not be parsed as an older one.
        let body = br#"{"version":3,"whatever":"new shape"}"#;
        assert!(matches!(
            JobMessage::decode(body),
            Err(DecodeError::UnsupportedVersion(3))
        ));
        let mut value: Value = serde_json::from_slice(&samples()[0].encode()).unwrap();
        value["version"] = Value::from(0);
        let body = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            JobMessage::decode(&body),
            Err(DecodeError::UnsupportedVersion(0))
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        for body in [
            &b""[..],
            b"not json",
            b"\xff\xfe",
            b"[1,2]",
            b"null",
            b"{\"version\":",
        ] {
            assert!(
                matches!(JobMessage::decode(body), Err(DecodeError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn missing_or_mistyped_version_is_malformed() {
        let mut value: Value = serde_json::from_slice(&samples()[2].encode()).unwrap();
        if let Some(object) = value.as_object_mut() {
            object.remove("version");
        }
        let body = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            JobMessage::decode(&body),
            Err(DecodeError::Malformed(_))
        ));

        for version in [
            Value::from("1"),
            Value::from(-1),
            Value::from(1.5),
            Value::Null,
        ] {
            value["version"] = version;
            let body = serde_json::to_vec(&value).unwrap();
            assert!(matches!(
                JobMessage::decode(&body),
                Err(DecodeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn version_one_with_a_bad_body_is_malformed() {
        let bodies = [
            r#"{"version":1}"#,
            r#"{"version":1,"job_id":"not-a-uuid","package_guid":"p","request_id":"r","kind":"delete_bits","args":{"blob_key":"k"}}"#,
            r#"{"version":1,"job_id":"6f1c1f3e-8a59-4d5e-9a4b-2c1d0e9f8a7b","package_guid":"p","request_id":"r","kind":"explode","args":{}}"#,
            r#"{"version":1,"job_id":"6f1c1f3e-8a59-4d5e-9a4b-2c1d0e9f8a7b","package_guid":"p","request_id":"r","kind":"copy_bits","args":{"blob_key":"k"}}"#,
        ];
        for body in bodies {
            assert!(
                matches!(
                    JobMessage::decode(body.as_bytes()),
                    Err(DecodeError::Malformed(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn serialized_messages_match_the_schema_of_their_version() {
        for message in samples() {
            check_against_schema(&schema(message.version), &message);
        }
        // Version 2 only adds optional fields to process_upload.
        let (v1, v2) = (schema(1), schema(2));
        assert_eq!(v1["$defs"]["copy_bits"], v2["$defs"]["copy_bits"]);
        assert_eq!(v1["$defs"]["delete_bits"], v2["$defs"]["delete_bits"]);
        assert_eq!(
            v1["$defs"]["process_upload"]["required"],
            v2["$defs"]["process_upload"]["required"]
        );
    }

    fn check_against_schema(schema: &Value, message: &JobMessage) {
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
        assert_eq!(
            schema["properties"]["version"]["const"],
            Value::from(message.version)
        );

        let required = strings(&schema["required"]);
        assert_eq!(
            required,
            keys(&schema["properties"]),
            "every top-level field is required"
        );
        let kinds = strings(&schema["properties"]["kind"]["enum"]);
        let all_kinds: BTreeSet<String> = [
            JobKind::ProcessUpload,
            JobKind::CopyBits,
            JobKind::DeleteBits,
        ]
        .map(|k| k.as_str().to_owned())
        .into();
        assert_eq!(kinds, all_kinds);

        // kind -> the $defs entry that the schema's if/then applies to its args.
        let mut args_schema_of = std::collections::BTreeMap::new();
        for rule in schema["allOf"].as_array().unwrap() {
            let kind = rule["if"]["properties"]["kind"]["const"].as_str().unwrap();
            let reference = rule["then"]["properties"]["args"]["$ref"].as_str().unwrap();
            let name = reference.strip_prefix("#/$defs/").unwrap();
            args_schema_of.insert(kind.to_owned(), &schema["$defs"][name]);
        }
        assert_eq!(
            args_schema_of.keys().cloned().collect::<BTreeSet<_>>(),
            all_kinds
        );

        let value: Value = serde_json::from_slice(&message.encode()).unwrap();
        assert_eq!(keys(&value), required);
        let kind = value["kind"].as_str().unwrap();
        assert_eq!(kind, message.kind().as_str());
        let args_schema = args_schema_of[kind];
        assert_eq!(args_schema["additionalProperties"], Value::Bool(false));
        let args = keys(&value["args"]);
        assert!(
            strings(&args_schema["required"]).is_subset(&args),
            "{kind}: required"
        );
        assert!(
            args.is_subset(&keys(&args_schema["properties"])),
            "{kind}: no field outside the schema"
        );
        for field in &args {
            let matches_type = match args_schema["properties"][field]["type"].as_str().unwrap() {
                "string" => value["args"][field].is_string(),
                "integer" => value["args"][field].is_u64(),
                "boolean" => value["args"][field].is_boolean(),
                other => panic!("unexpected type {other}"),
            };
            assert!(matches_type, "{kind}.{field}");
        }
    }
}
