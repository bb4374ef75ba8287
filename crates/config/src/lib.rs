//! Configuration of the package store: built-in defaults, overridden by a TOML config
//! file, overridden by `PACKAGES__SECTION__KEY` environment variables.
//!
//! The layers are merged by hand rather than through a generic configuration library so
//! that every key is typed by its own rule: environment text becomes a number only where
//! the key is numeric, and an access key `12345` or a secret `true` stays text. Unknown
//! keys are rejected, and every error is one line naming the key and where it came from.

mod keys;
mod settings;
mod value;

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

pub use keys::KEYS;
pub use settings::{
    Auth, Blobstore, BlobstoreKind, Database, LocalBlobstore, Log, LogFormat, Packages, Queue,
    QueueUrl, S3Blobstore, Server, Settings, Upload, Worker,
};

use keys::Problem;
use value::Raw;

/// Environment variable naming the config file when none is given explicitly.
pub const CONFIG_FILE_ENV: &str = "PACKAGES_CONFIG";

/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "PACKAGES__";

/// Separator between levels in an override variable's name.
const ENV_SEPARATOR: &str = "__";

/// Where a configured value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in config file '{}'", path.display()),
            Origin::Env(name) => write!(f, "from environment variable {name}"),
        }
    }
}

/// Why the configuration could not be loaded. `Display` is one line meant for stderr.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file '{}': {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse config file '{}': {message}", path.display())]
    ParseFile { path: PathBuf, message: String },
    #[error("unknown configuration key '{key}' ({origin})")]
    UnknownKey { key: String, origin: Origin },
    #[error("{key}: {problem} ({origin})")]
    InvalidValue {
        key: String,
        problem: String,
        origin: Origin,
    },
    /// Two settings that only work together, one of them missing.
    #[error("{key}: {problem}")]
    Incomplete { key: String, problem: String },
    #[error("environment variable {name} is not valid UTF-8")]
    NotUnicode { name: String },
}

impl ConfigError {
    /// The configuration key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::Incomplete { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Loads the settings of this process: the config file is `config_file`, else the one
/// named by `PACKAGES_CONFIG`, else none; overrides come from the process environment.
pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
    let path = resolve_config_file(config_file, std::env::var_os(CONFIG_FILE_ENV).as_deref());
    let env = process_env()?;
    load_from(path.as_deref(), env)
}

/// Loads settings from defaults, then `config_file` if given (it must exist), then the
/// `PACKAGES__…` entries of `env`; other entries of `env` are ignored.
pub fn load_from(
    config_file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let mut settings = Settings::defaults();
    if let Some(path) = config_file {
        apply_file(&mut settings, path)?;
    }
    apply_env(&mut settings, env)?;
    check_combinations(&settings)?;
    Ok(settings)
}

/// Rules that involve more than one key.
fn check_combinations(settings: &Settings) -> Result<(), ConfigError> {
    if settings.upload.bits_path_root.is_some() && settings.upload.proxy_secret.is_none() {
        return Err(ConfigError::Incomplete {
            key: "upload.bits_path_root".to_owned(),
            problem: "requires upload.proxy_secret: without it any client could name a file \
                      in that directory"
                .to_owned(),
        });
    }
    Ok(())
}

/// The config file to read: the explicit one wins over `PACKAGES_CONFIG`, and an empty
/// `PACKAGES_CONFIG` counts as unset.
fn resolve_config_file(explicit: Option<&Path>, env_value: Option<&OsStr>) -> Option<PathBuf> {
    explicit.map(Path::to_path_buf).or_else(|| {
        env_value
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    })
}

/// The override variables of the process. `std::env::vars` would panic on a non-UTF-8
/// entry anywhere in the environment; only ours are required to be UTF-8.
fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        if !name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
            continue;
        }
        let name = name.into_string().map_err(|name| ConfigError::NotUnicode {
            name: name.to_string_lossy().into_owned(),
        })?;
        let value = value
            .into_string()
            .map_err(|_| ConfigError::NotUnicode { name: name.clone() })?;
        vars.push((name, value));
    }
    Ok(vars)
}

fn apply_file(settings: &mut Settings, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|err| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: describe_toml_error(&text, &err),
    })?;
    apply_table(settings, None, &table, &Origin::File(path.to_path_buf()))
}

/// toml's own `Display` spans several lines with a source excerpt; this is one line.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

fn apply_table(
    settings: &mut Settings,
    section: Option<&str>,
    table: &toml::Table,
    origin: &Origin,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = match section {
            Some(section) => format!("{section}.{name}"),
            None => name.clone(),
        };
        // A quoted key such as `"server.bind"` would otherwise alias the nested one.
        if name.is_empty() || name.contains('.') {
            return Err(unknown_key(key, origin));
        }
        if keys::is_key(&key) {
            apply_one(settings, key, Raw::Toml(value), origin)?;
        } else if keys::is_section(&key) {
            match value {
                toml::Value::Table(inner) => apply_table(settings, Some(&key), inner, origin)?,
                other => {
                    return Err(ConfigError::InvalidValue {
                        problem: format!("expected a table of settings, got {}", other.type_str()),
                        key,
                        origin: origin.clone(),
                    });
                }
            }
        } else {
            return Err(unknown_key(key, origin));
        }
    }
    Ok(())
}

fn apply_env(
    settings: &mut Settings,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    // Sorted so that, with several bad variables, the same one is reported every time.
    // The sort is stable: of two entries with one name, the later still wins.
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in &vars {
        let origin = Origin::Env(name.clone());
        let key = env_key(name);
        if !keys::is_key(&key) {
            return Err(unknown_key(key, &origin));
        }
        apply_one(settings, key, Raw::Env(value), &origin)?;
    }
    Ok(())
}

/// `PACKAGES__BLOBSTORE__S3__ACCESS_KEY` → `blobstore.s3.access_key`. A name with a dot
/// or an empty level yields a key that does not exist, so it is reported as unknown.
fn env_key(name: &str) -> String {
    let rest = name.get(ENV_PREFIX.len()..).unwrap_or_default();
    let levels: Vec<String> = rest
        .split(ENV_SEPARATOR)
        .map(|level| {
            if level.contains('.') {
                // Keeps `SERVER.BIND` from aliasing `SERVER__BIND`.
                format!("\"{}\"", level.to_ascii_lowercase())
            } else {
                level.to_ascii_lowercase()
            }
        })
        .collect();
    levels.join(".")
}

fn apply_one(
    settings: &mut Settings,
    key: String,
    raw: Raw<'_>,
    origin: &Origin,
) -> Result<(), ConfigError> {
    keys::apply(settings, &key, raw).map_err(|problem| match problem {
        Problem::Unknown => unknown_key(key, origin),
        Problem::Invalid(problem) => ConfigError::InvalidValue {
            key,
            problem,
            origin: origin.clone(),
        },
    })
}

fn unknown_key(key: String, origin: &Origin) -> ConfigError {
    ConfigError::UnknownKey {
        key,
        origin: origin.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_file_wins_over_packages_config() {
        let got = resolve_config_file(Some(Path::new("a.toml")), Some(OsStr::new("b.toml")));
        assert_eq!(got, Some(PathBuf::from("a.toml")));
    }

    #[test]
    fn packages_config_names_the_file_when_none_is_given() {
        let got = resolve_config_file(None, Some(OsStr::new("b.toml")));
        assert_eq!(got, Some(PathBuf::from("b.toml")));
    }

    #[test]
    fn no_file_when_neither_is_set() {
        assert_eq!(resolve_config_file(None, None), None);
        assert_eq!(resolve_config_file(None, Some(OsStr::new(""))), None);
    }

    #[test]
    fn env_names_map_to_keys() {
        assert_eq!(env_key("PACKAGES__DATABASE__URL"), "database.url");
        assert_eq!(
            env_key("PACKAGES__BLOBSTORE__S3__ACCESS_KEY"),
            "blobstore.s3.access_key"
        );
        assert_eq!(env_key("PACKAGES__SERVER___BIND"), "server._bind");
        assert!(!keys::is_key(&env_key("PACKAGES__SERVER.BIND")));
    }

    #[test]
    fn parse_errors_are_one_line_with_a_position() {
        let text = "[server]\nbind = \n";
        let err = text.parse::<toml::Table>().unwrap_err();
        let message = describe_toml_error(text, &err);
        assert!(!message.contains('\n'), "{message}");
        assert!(message.starts_with("line 2, column "), "{message}");
    }
}
