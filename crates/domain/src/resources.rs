//! Resource matching: the `POST /v3/resource_matches` body, the fingerprints of an
//! upload's `resources` part, and the checks the worker makes on each fingerprint before
//! it assembles a package (spec 10.2–10.5).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::validation::Invalid;

/// Most entries one resource match request may hold.
pub const MAX_MATCH_RESOURCES: usize = 5000;
/// Mode of a resource whose fingerprint names none (CC's `DEFAULT_FILE_MODE`).
pub const DEFAULT_FILE_MODE: u32 = 0o744;
/// Bits every resource's mode must have: owner read and write.
pub const MINIMUM_FILE_MODE: u32 = 0o600;
/// `Resources must be valid JSON.`: an upload's `resources` part that is not JSON, or not
/// an array of objects.
pub const RESOURCES_NOT_JSON: &str = "Resources must be valid JSON.";

const SHA1_CHARS: usize = 40;
const PREAMBLE: &str = "Resources array contains at least one resource with";

/// `{"value": "<sha1>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checksum {
    pub value: String,
}

/// One entry of a valid resource match request, shaped as the answer echoes it: the
/// values the client sent, `path` and `mode` `null` when not sent, other keys dropped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceMatch {
    pub checksum: Checksum,
    pub size_in_bytes: u64,
    /// Not validated: echoed as sent.
    pub path: Value,
    /// A string of octal digits, or `null`.
    pub mode: Option<String>,
}

impl ResourceMatch {
    /// The pool key asked for: the SHA-1 in lowercase (clients may send either case).
    pub fn sha1(&self) -> String {
        self.checksum.value.to_ascii_lowercase()
    }
}

/// Rails' `length` of a value that is not an array: a string's characters, an object's
/// pairs, anything else its text (`nil` is `""`).
fn rails_length(value: Option<&Value>) -> usize {
    match value {
        None | Some(Value::Null) => 0,
        Some(Value::Array(items)) => items.len(),
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Object(map)) => map.len(),
        Some(other) => other.to_string().chars().count(),
    }
}

fn is_octal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

/// Validates a resource match body (spec 10.3) with CC's `ResourceMatchCreateMessage`
/// texts, each at most once, in order of first occurrence. Keys other than `resources`
/// are ignored. Returns the entries to look up, in request order.
pub fn resource_matches(body: &Map<String, Value>) -> Result<Vec<ResourceMatch>, Invalid> {
    let mut errors: Vec<String> = Vec::new();
    let mut add = |message: String| {
        if !errors.contains(&message) {
            errors.push(message);
        }
    };
    let resources = body.get("resources");
    let items = match resources {
        Some(Value::Array(items)) => Some(items),
        _ => {
            add("Resources must be an array".into());
            None
        }
    };
    let length = rails_length(resources);
    if length == 0 {
        add("Resources must have at least 1 resource".into());
    } else if length > MAX_MATCH_RESOURCES {
        add(format!(
            "Resources array can have at most {MAX_MATCH_RESOURCES} resources"
        ));
    }
    let mut matches = Vec::new();
    for item in items.into_iter().flatten() {
        let entry = item.as_object();
        let field = |key: &str| entry.and_then(|e| e.get(key));
        let sha1 = match field("checksum") {
            Some(Value::Object(checksum)) => match checksum.get("value") {
                Some(Value::String(value)) if value.chars().count() == SHA1_CHARS => {
                    Some(value.clone())
                }
                Some(Value::String(_)) => {
                    add(format!("{PREAMBLE} a non-SHA1 checksum value"));
                    None
                }
                _ => {
                    add(format!("{PREAMBLE} a non-string checksum value"));
                    None
                }
            },
            _ => {
                add(format!("{PREAMBLE} a non-object checksum"));
                None
            }
        };
        let size = match field("size_in_bytes") {
            Some(Value::Number(n)) if n.is_u64() => n.as_u64(),
            Some(Value::Number(n)) if n.is_i64() => {
                add(format!("{PREAMBLE} a negative size_in_bytes"));
                None
            }
            _ => {
                add(format!("{PREAMBLE} a non-integer size_in_bytes"));
                None
            }
        };
        let mode = match field("mode") {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(mode)) if is_octal(mode) => Some(Some(mode.clone())),
            Some(Value::String(_)) => {
                add(format!("{PREAMBLE} an incorrect mode"));
                None
            }
            Some(_) => {
                add(format!("{PREAMBLE} a non-string mode"));
                None
            }
        };
        if let (Some(value), Some(size_in_bytes), Some(mode)) = (sha1, size, mode) {
            matches.push(ResourceMatch {
                checksum: Checksum { value },
                size_in_bytes,
                path: field("path").cloned().unwrap_or(Value::Null),
                mode,
            });
        }
    }
    if errors.is_empty() {
        Ok(matches)
    } else {
        Err(Invalid(errors))
    }
}

/// One resource of an upload's `resources` part, as sent: nothing about it is judged
/// when the upload is accepted, so every field keeps its JSON value (`null` when absent)
/// for the worker to check ([`Fingerprint::check`]) and to quote in its texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `checksum.value` (GA) or `sha1` (v2).
    #[serde(default)]
    pub sha1: Value,
    /// `size_in_bytes` (GA) or `size` (v2).
    #[serde(default)]
    pub size: Value,
    /// `path` (GA) or `fn` (v2).
    #[serde(default)]
    pub path: Value,
    #[serde(default)]
    pub mode: Value,
}

/// A JSON value as CC interpolates it into a text: a string as itself, `null` (or
/// absent) as nothing, anything else as its JSON text (`420`).
fn as_given(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A fingerprint the worker may not use (spec 10.5 step 2); the text is the package's
/// `data.error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeResource {
    /// CC's `AppResourcesFilePathInvalid`.
    #[error("The resource file path is invalid: File path '{path}' is not safe.")]
    Path { path: String },
    /// CC's `AppResourcesFileModeInvalid`.
    #[error(
        "The resource file mode is invalid: File mode '{mode}' with path '{path}' is invalid. Minimum file mode is '0600'"
    )]
    Mode { mode: String, path: String },
}

/// A fingerprint that passed [`Fingerprint::check`]: where its file goes and with which
/// mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedResource {
    /// The path with `.` and `..` resolved, `/`-separated (`a/../b.bin` → `b.bin`).
    pub path: String,
    /// The mode's value (its low 32 bits); `0744` when none was given.
    pub mode: u32,
    /// The pool key, when the fingerprint names one: lowercase SHA-1 and size.
    pub pool_key: Option<(String, u64)>,
    /// The SHA-1 as sent, for [`CheckedResource::not_found`].
    pub sha1_as_given: String,
}

impl CheckedResource {
    /// Unix mode of the zip entry written for this resource: a regular file with the
    /// permission bits of [`CheckedResource::mode`].
    pub fn unix_mode(&self) -> u32 {
        0o100_000 | (self.mode & 0o7777)
    }

    /// `Could not find object '<sha1 as given>'`: the resource is not in the pool with
    /// that size.
    pub fn not_found(&self) -> String {
        format!("Could not find object '{}'", self.sha1_as_given)
    }
}

impl Fingerprint {
    /// Reads one element of a `resources` list: an object with both `checksum` and
    /// `size_in_bytes` is GA (`checksum.value`, `size_in_bytes`, `path`, `mode`), any other
    /// object v2 (`sha1`, `size`, `fn`, `mode`). `None` for what CC cannot translate: a
    /// non-object, or a GA object whose `checksum` is not an object.
    pub fn from_json(value: &Value) -> Option<Fingerprint> {
        let entry = value.as_object()?;
        let get = |key: &str| entry.get(key).cloned().unwrap_or(Value::Null);
        if entry.contains_key("checksum") && entry.contains_key("size_in_bytes") {
            let checksum = entry.get("checksum")?.as_object()?;
            Some(Fingerprint {
                sha1: checksum.get("value").cloned().unwrap_or(Value::Null),
                size: get("size_in_bytes"),
                path: get("path"),
                mode: get("mode"),
            })
        } else {
            Some(Fingerprint {
                sha1: get("sha1"),
                size: get("size"),
                path: get("fn"),
                mode: get("mode"),
            })
        }
    }

    /// The path as the texts quote it (`''` when missing).
    pub fn path_as_given(&self) -> String {
        as_given(&self.path)
    }

    /// The SHA-1 as the texts quote it (`''` when missing).
    pub fn sha1_as_given(&self) -> String {
        as_given(&self.sha1)
    }

    /// The path inside the package: relative and non-empty once `.` and `..` are
    /// resolved, never climbing above the root. `\` counts as a separator too, as for the
    /// entries of an uploaded zip, so no unpacker can read it as a way out.
    pub fn normalized_path(&self) -> Result<String, UnsafeResource> {
        let unsafe_path = || UnsafeResource::Path {
            path: self.path_as_given(),
        };
        let Value::String(path) = &self.path else {
            return Err(unsafe_path());
        };
        let drive = path.as_bytes().get(1) == Some(&b':')
            && path.as_bytes().first().is_some_and(u8::is_ascii_alphabetic);
        if path.starts_with(['/', '\\']) || drive || path.contains('\0') {
            return Err(unsafe_path());
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in path.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop().ok_or_else(unsafe_path)?;
                }
                name => parts.push(name),
            }
        }
        if parts.is_empty() {
            return Err(unsafe_path());
        }
        Ok(parts.join("/"))
    }

    /// The file mode: `0744` when absent or `null`, else a string of octal digits whose
    /// value has owner read and write. Anything else, `420` included, is refused with the
    /// mode as given.
    pub fn file_mode(&self) -> Result<u32, UnsafeResource> {
        let mode = match &self.mode {
            Value::Null => return Ok(DEFAULT_FILE_MODE),
            // Wrapping keeps the low bits, the only ones a zip entry's mode holds.
            Value::String(s) if is_octal(s) => s.bytes().fold(0u32, |acc, b| {
                acc.wrapping_mul(8).wrapping_add(u32::from(b - b'0'))
            }),
            _ => 0,
        };
        if mode & MINIMUM_FILE_MODE == MINIMUM_FILE_MODE {
            Ok(mode)
        } else {
            Err(UnsafeResource::Mode {
                mode: as_given(&self.mode),
                path: self.path_as_given(),
            })
        }
    }

    /// The pool entry this fingerprint names: a 40-digit hex SHA-1 (lowercased) and a
    /// non-negative integer size; `None` when it names none, which no pool holds.
    pub fn pool_key(&self) -> Option<(String, u64)> {
        let sha1 = self.sha1.as_str()?;
        let size = self.size.as_u64()?;
        (sha1.len() == SHA1_CHARS && sha1.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| (sha1.to_ascii_lowercase(), size))
    }

    /// Step 2 of assembly for one fingerprint: its path, then its mode.
    pub fn check(&self) -> Result<CheckedResource, UnsafeResource> {
        let path = self.normalized_path()?;
        let mode = self.file_mode()?;
        Ok(CheckedResource {
            path,
            mode,
            pool_key: self.pool_key(),
            sha1_as_given: self.sha1_as_given(),
        })
    }
}

/// Step 2 of assembly: every fingerprint in order; the first failure ends it.
pub fn check_all(fingerprints: &[Fingerprint]) -> Result<Vec<CheckedResource>, UnsafeResource> {
    fingerprints.iter().map(Fingerprint::check).collect()
}

/// Reads an upload's `resources` part: a JSON array of fingerprints, GA and v2 forms
/// mixed as the client likes. Anything else is [`RESOURCES_NOT_JSON`].
pub fn parse_upload_resources(raw: &str) -> Result<Vec<Fingerprint>, Invalid> {
    let not_json = || Invalid::one(RESOURCES_NOT_JSON);
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(raw) else {
        return Err(not_json());
    };
    items
        .iter()
        .map(|item| Fingerprint::from_json(item).ok_or_else(not_json))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SHA_BIG: &str = "002d760bea1be268e27077412e11a320d0f164d3";
    const SHA_ABC: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";

    fn matches(body: Value) -> Result<Vec<ResourceMatch>, Invalid> {
        match body {
            Value::Object(map) => resource_matches(&map),
            other => panic!("object expected, got {other}"),
        }
    }

    fn match_errors(body: Value) -> String {
        matches(body).unwrap_err().to_string()
    }

    fn fingerprint(value: Value) -> Fingerprint {
        Fingerprint::from_json(&value).unwrap()
    }

    #[test]
    fn resource_matches_echo_what_was_sent() {
        let found = matches(json!({
            "resources": [
                {"checksum": {"value": SHA_BIG}, "size_in_bytes": 102400, "path": "lib/big.jar", "mode": "644", "extra": 1},
                {"checksum": {"value": SHA_ABC.to_uppercase()}, "size_in_bytes": 3},
            ],
            "ignored": true
        }))
        .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(
            serde_json::to_value(&found).unwrap(),
            json!([
                {"checksum": {"value": SHA_BIG}, "size_in_bytes": 102400, "path": "lib/big.jar", "mode": "644"},
                {"checksum": {"value": SHA_ABC.to_uppercase()}, "size_in_bytes": 3, "path": null, "mode": null},
            ])
        );
        assert_eq!(found[1].sha1(), SHA_ABC);
        // Path is not judged.
        assert_eq!(
            matches(json!({"resources": [{"checksum": {"value": SHA_BIG}, "size_in_bytes": 0, "path": 7}]}))
                .unwrap()[0]
                .path,
            json!(7)
        );
    }

    #[test]
    fn resource_match_table() {
        let p = "Resources array contains at least one resource with";
        assert_eq!(
            match_errors(json!({})),
            "Resources must be an array, Resources must have at least 1 resource"
        );
        assert_eq!(
            match_errors(json!({"resources": null})),
            "Resources must be an array, Resources must have at least 1 resource"
        );
        assert_eq!(
            match_errors(json!({"resources": "abc"})),
            "Resources must be an array"
        );
        assert_eq!(
            match_errors(json!({"resources": {"a": 1}})),
            "Resources must be an array"
        );
        assert_eq!(
            match_errors(json!({"resources": 5})),
            "Resources must be an array"
        );
        assert_eq!(
            match_errors(json!({"resources": ""})),
            "Resources must be an array, Resources must have at least 1 resource"
        );
        assert_eq!(
            match_errors(json!({"resources": []})),
            "Resources must have at least 1 resource"
        );
        let ok = json!({"checksum": {"value": SHA_BIG}, "size_in_bytes": 1});
        assert_eq!(
            match_errors(json!({"resources": vec![ok.clone(); 5001]})),
            "Resources array can have at most 5000 resources"
        );
        assert!(matches(json!({"resources": vec![ok; 5000]})).is_ok());
        let one = |entry: Value| match_errors(json!({ "resources": [entry] }));
        assert_eq!(
            one(json!({"checksum": "x", "size_in_bytes": 1})),
            format!("{p} a non-object checksum")
        );
        assert_eq!(
            one(json!("x")),
            format!("{p} a non-object checksum, {p} a non-integer size_in_bytes")
        );
        assert_eq!(
            one(json!({"checksum": {"value": 5}, "size_in_bytes": 1})),
            format!("{p} a non-string checksum value")
        );
        assert_eq!(
            one(json!({"checksum": {}, "size_in_bytes": 1})),
            format!("{p} a non-string checksum value")
        );
        // Only the length is checked.
        assert!(
            matches(
                json!({"resources": [{"checksum": {"value": "z".repeat(40)}, "size_in_bytes": 1}]})
            )
            .is_ok()
        );
        assert_eq!(
            one(json!({"checksum": {"value": "abc"}, "size_in_bytes": 1})),
            format!("{p} a non-SHA1 checksum value")
        );
        for size in [json!("12"), json!(1.5), json!(null)] {
            assert_eq!(
                one(json!({"checksum": {"value": SHA_BIG}, "size_in_bytes": size})),
                format!("{p} a non-integer size_in_bytes")
            );
        }
        assert_eq!(
            one(json!({"checksum": {"value": SHA_BIG}})),
            format!("{p} a non-integer size_in_bytes")
        );
        assert_eq!(
            one(json!({"checksum": {"value": SHA_BIG}, "size_in_bytes": -1})),
            format!("{p} a negative size_in_bytes")
        );
        assert_eq!(
            one(json!({"checksum": {"value": SHA_BIG}, "size_in_bytes": 1, "mode": 644})),
            format!("{p} a non-string mode")
        );
        for mode in ["", "648", "0x1", "rw"] {
            assert_eq!(
                one(json!({"checksum": {"value": SHA_BIG}, "size_in_bytes": 1, "mode": mode})),
                format!("{p} an incorrect mode")
            );
        }
    }

    #[test]
    fn resource_match_messages_once_each_in_first_order() {
        let p = "Resources array contains at least one resource with";
        assert_eq!(
            match_errors(json!({"resources": [
                {"checksum": {"value": SHA_BIG}, "size_in_bytes": -1, "mode": 1},
                {"checksum": "x", "size_in_bytes": -2},
                {"checksum": {"value": "short"}, "size_in_bytes": "1", "mode": "9"},
                7,
            ]})),
            format!(
                "{p} a negative size_in_bytes, {p} a non-string mode, {p} a non-object checksum, {p} a non-SHA1 checksum value, {p} a non-integer size_in_bytes, {p} an incorrect mode"
            )
        );
    }

    #[test]
    fn fingerprints_in_both_forms() {
        assert_eq!(
            fingerprint(
                json!({"checksum": {"value": SHA_BIG}, "size_in_bytes": 102400, "path": "lib/big.jar", "mode": "644"})
            ),
            Fingerprint {
                sha1: json!(SHA_BIG),
                size: json!(102400),
                path: json!("lib/big.jar"),
                mode: json!("644"),
            }
        );
        assert_eq!(
            fingerprint(
                json!({"sha1": SHA_BIG, "size": 102400, "fn": "lib/big.jar", "mode": "644"})
            ),
            Fingerprint {
                sha1: json!(SHA_BIG),
                size: json!(102400),
                path: json!("lib/big.jar"),
                mode: json!("644"),
            }
        );
        // A mixed object is v2, and so lacks its sha1.
        let mixed = fingerprint(json!({"checksum": {"value": SHA_BIG}, "size": 3, "fn": "a"}));
        assert_eq!(mixed.sha1, Value::Null);
        assert_eq!(mixed.size, json!(3));
        assert_eq!(fingerprint(json!({})).path, Value::Null);
        assert_eq!(Fingerprint::from_json(&json!(1)), None);
        assert_eq!(
            Fingerprint::from_json(&json!({"checksum": null, "size_in_bytes": 1})),
            None
        );
        // Workers receive fingerprints as JSON.
        let f = fingerprint(json!({"sha1": SHA_BIG, "size": 1}));
        let text = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<Fingerprint>(&text).unwrap(), f);
        assert_eq!(
            serde_json::from_str::<Fingerprint>("{}").unwrap(),
            fingerprint(json!({}))
        );
    }

    #[test]
    fn upload_resources_part() {
        let parsed = parse_upload_resources(&format!(
            r#"[{{"checksum":{{"value":"{SHA_BIG}"}},"size_in_bytes":102400,"path":"lib/big.jar","mode":"644"}},{{"sha1":"{SHA_ABC}","size":3,"fn":"abc.txt"}}]"#
        ))
        .unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].path, json!("abc.txt"));
        assert_eq!(parse_upload_resources("[]").unwrap(), vec![]);
        for bad in [
            "",
            "[",
            "{}",
            "\"x\"",
            "[1]",
            "null",
            "[null]",
            "[[]]",
            r#"[{"checksum":"x","size_in_bytes":1}]"#,
        ] {
            assert_eq!(
                parse_upload_resources(bad).unwrap_err().to_string(),
                RESOURCES_NOT_JSON,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn paths() {
        let path = |p: Value| fingerprint(json!({ "fn": p })).normalized_path();
        assert_eq!(path(json!("lib/big.jar")), Ok("lib/big.jar".into()));
        assert_eq!(path(json!("a/../b.bin")), Ok("b.bin".into()));
        assert_eq!(path(json!("./a//b/./c")), Ok("a/b/c".into()));
        assert_eq!(path(json!("a\\b.bin")), Ok("a/b.bin".into()));
        assert_eq!(path(json!("a/")), Ok("a".into()));
        let unsafe_text =
            |p: &str| format!("The resource file path is invalid: File path '{p}' is not safe.");
        for bad in [
            "../evil.bin",
            "a/../../evil.bin",
            "/etc/passwd",
            "\\evil",
            "C:/evil",
            "c:evil",
            "",
            ".",
            "a/..",
            "..\\evil",
            "a\0b",
        ] {
            assert_eq!(
                path(json!(bad)).unwrap_err().to_string(),
                unsafe_text(bad),
                "{bad:?}"
            );
        }
        assert_eq!(
            fingerprint(json!({}))
                .normalized_path()
                .unwrap_err()
                .to_string(),
            unsafe_text("")
        );
        assert_eq!(path(json!(5)).unwrap_err().to_string(), unsafe_text("5"));
    }

    #[test]
    fn modes() {
        let mode = |m: Value| fingerprint(json!({"fn": "lib/a.jar", "mode": m})).file_mode();
        assert_eq!(fingerprint(json!({"fn": "a"})).file_mode(), Ok(0o744));
        assert_eq!(mode(json!(null)), Ok(0o744));
        assert_eq!(mode(json!("644")), Ok(0o644));
        assert_eq!(mode(json!("0600")), Ok(0o600));
        assert_eq!(mode(json!("100755")), Ok(0o100_755));
        assert_eq!(mode(json!("7777777777777777777777")), Ok(u32::MAX));
        let text = |m: &str| {
            format!(
                "The resource file mode is invalid: File mode '{m}' with path 'lib/a.jar' is invalid. Minimum file mode is '0600'"
            )
        };
        for (bad, shown) in [
            (json!("0400"), "0400"),
            (json!("abc"), "abc"),
            (json!("644abc"), "644abc"),
            (json!(""), ""),
            (json!(420), "420"),
            (json!(false), "false"),
        ] {
            assert_eq!(mode(bad).unwrap_err().to_string(), text(shown));
        }
    }

    #[test]
    fn checks_and_pool_keys() {
        let checked = fingerprint(json!({"checksum": {"value": SHA_BIG.to_uppercase()}, "size_in_bytes": 102400, "path": "x/../lib/big.jar", "mode": "644"}))
            .check()
            .unwrap();
        assert_eq!(
            checked,
            CheckedResource {
                path: "lib/big.jar".into(),
                mode: 0o644,
                pool_key: Some((SHA_BIG.into(), 102400)),
                sha1_as_given: SHA_BIG.to_uppercase(),
            }
        );
        assert_eq!(checked.unix_mode(), 0o100_644);
        assert_eq!(
            checked.not_found(),
            format!("Could not find object '{}'", SHA_BIG.to_uppercase())
        );
        let absent = fingerprint(json!({"fn": "a"})).check().unwrap();
        assert_eq!(absent.pool_key, None);
        assert_eq!(absent.not_found(), "Could not find object ''");
        assert_eq!(absent.unix_mode(), 0o100_744);
        for (sha1, size) in [
            (json!("z".repeat(40)), json!(1)),
            (json!("abc"), json!(1)),
            (json!(SHA_BIG), json!(-1)),
            (json!(SHA_BIG), json!("1")),
        ] {
            assert_eq!(
                fingerprint(json!({"sha1": sha1, "size": size})).pool_key(),
                None
            );
        }
        // Path before mode, fingerprints in order, the first failure ends it.
        let list = vec![
            fingerprint(json!({"fn": "ok", "mode": "644"})),
            fingerprint(json!({"fn": "../bad", "mode": "0"})),
            fingerprint(json!({"fn": "bad-mode", "mode": "0"})),
        ];
        assert_eq!(
            check_all(&list).unwrap_err().to_string(),
            "The resource file path is invalid: File path '../bad' is not safe."
        );
        assert_eq!(
            check_all(&list[2..]).unwrap_err(),
            UnsafeResource::Mode {
                mode: "0".into(),
                path: "bad-mode".into()
            }
        );
        assert_eq!(check_all(&list[..1]).unwrap().len(), 1);
    }
}
