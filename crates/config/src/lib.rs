//! Configuration of the package store: built-in defaults, overridden by a TOML config
//! file, overridden by `PACKAGES__SECTION__KEY` environment variables.
//!
//! The `config` crate merges the three layers and maps variable names to keys, and serde
//! deserializes the result into [`Settings`], each field through a function that types
//! and checks its value (`value.rs`). Two things are checked before a layer is handed to
//! `config`, against the key table (`keys.rs`), because `config` would accept them
//! silently: a key that does not exist, or one spelt with a dot in a quoted TOML key or a
//! variable name (which `config` would read as a nested key), is refused by name; and a
//! file value of the wrong kind is refused instead of being converted, so a TOML number
//! for a secret is an error while environment text such as `12345` stays text for a text
//! key and becomes a number only for a numeric one. Every error is one line naming the
//! key and where its value came from, and never shows a value that may be a secret.

mod keys;
mod settings;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use config::builder::DefaultState;
use config::{ConfigBuilder, Environment, FileFormat, Source, ValueKind};

pub use keys::KEYS;
pub use settings::{
    Auth, Blobstore, BlobstoreKind, Database, LocalBlobstore, Log, LogFormat, Packages, Queue,
    QueueUrl, S3Blobstore, Server, Settings, Upload, Worker,
};

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
    /// The layers could not be merged or read; not expected once the checks above passed.
    #[error("cannot assemble the configuration: {0}")]
    Assemble(String),
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

/// Loads the settings of this process from `config_file` (the command line's `--config`
/// or `PACKAGES_CONFIG`, which clap reads) and the process environment's overrides.
pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
    let env = process_env()?;
    load_from(config_file, env)
}

/// Loads settings from defaults, then `config_file` if given (it must exist), then the
/// `PACKAGES__…` entries of `env`; other entries of `env` are ignored.
pub fn load_from(
    config_file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let mut layers = config::Config::builder();
    for (key, value) in keys::defaults() {
        layers = layers.set_default(key, value).map_err(assemble)?;
    }
    if let Some(path) = config_file {
        let origin = Origin::File(path.to_path_buf());
        layers = layers.add_source(file_layer(path, &origin)?);
        // Typed before the environment is added, so that a bad value in the file is
        // reported even where a variable overrides it.
        typed(&layers, |_| origin.clone())?;
    }
    let (env_layer, names) = env_layer(env)?;
    // Defaults and file passed above, so a bad value now is one a variable set.
    let settings = typed(&layers.add_source(env_layer), |key| {
        Origin::Env(names.get(key).cloned().unwrap_or_else(|| env_name(key)))
    })?;
    check_combinations(&settings)?;
    Ok(settings)
}

/// The config file as a layer, after its keys and the kinds of its values are checked.
fn file_layer(
    path: &Path,
    origin: &Origin,
) -> Result<config::File<config::FileSourceString, FileFormat>, ConfigError> {
    // Read here rather than by `config::File`, which would try other extensions for a
    // missing file and hide the I/O error.
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let file = config::File::from_str(&text, FileFormat::Toml);
    let table = file.collect().map_err(|err| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: describe_parse_error(&text, err),
    })?;
    check_file_table(None, &table, origin)?;
    Ok(file)
}

/// Checks the file's keys against the key table and its values' kinds against theirs.
fn check_file_table(
    section: Option<&str>,
    table: &config::Map<String, config::Value>,
    origin: &Origin,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = section.map_or_else(|| name.clone(), |section| format!("{section}.{name}"));
        let unknown = || ConfigError::UnknownKey {
            key: key.clone(),
            origin: origin.clone(),
        };
        // A quoted key such as `"server.bind"` would otherwise alias the nested one.
        if name.is_empty() || name.contains('.') {
            return Err(unknown());
        }
        let checked = match (keys::kind(&key), &value.kind) {
            (Some(kind), value) => kind.admits(value),
            (None, ValueKind::Table(inner)) if keys::is_section(&key) => {
                check_file_table(Some(&key), inner, origin)?;
                Ok(())
            }
            (None, other) if keys::is_section(&key) => Err(format!(
                "expected a table of settings, got {}",
                keys::kind_name(other)
            )),
            (None, _) => return Err(unknown()),
        };
        checked.map_err(|problem| ConfigError::InvalidValue {
            key,
            problem,
            origin: origin.clone(),
        })?;
    }
    Ok(())
}

/// The `PACKAGES__…` entries of `env` as a layer, after their names are checked, with the
/// variable that set each key.
fn env_layer(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Environment, HashMap<String, String>), ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    // Sorted so that, with several bad variables, the same one is reported every time.
    // The sort is stable: of two entries with one name, the later still wins.
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut names = HashMap::new();
    for (name, _) in &vars {
        let key = env_key(name);
        if keys::kind(&key).is_none() {
            return Err(ConfigError::UnknownKey {
                key,
                origin: Origin::Env(name.clone()),
            });
        }
        names.insert(key, name.clone());
    }
    // Values stay text (no `try_parsing`): each key's deserializer reads its own type.
    let layer = Environment::with_prefix(ENV_PREFIX.trim_end_matches(ENV_SEPARATOR))
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .source(Some(vars.into_iter().collect()));
    Ok((layer, names))
}

/// The key `config` makes of a variable name: `PACKAGES__BLOBSTORE__S3__ACCESS_KEY` →
/// `blobstore.s3.access_key`. A level with a dot is quoted, so that `SERVER.BIND` is an
/// unknown key rather than an alias of `SERVER__BIND`.
fn env_key(name: &str) -> String {
    let rest = name.get(ENV_PREFIX.len()..).unwrap_or_default();
    let levels: Vec<String> = rest
        .split(ENV_SEPARATOR)
        .map(|level| {
            if level.contains('.') {
                format!("\"{}\"", level.to_ascii_lowercase())
            } else {
                level.to_ascii_lowercase()
            }
        })
        .collect();
    levels.join(".")
}

/// The variable that sets `key`: `blobstore.s3.access_key` →
/// `PACKAGES__BLOBSTORE__S3__ACCESS_KEY`.
fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', ENV_SEPARATOR).to_ascii_uppercase()
    )
}

/// Merges `layers` and deserializes them; a value that does not fit its key is reported
/// with the key and `origin_of` it.
fn typed(
    layers: &ConfigBuilder<DefaultState>,
    origin_of: impl Fn(&str) -> Origin,
) -> Result<Settings, ConfigError> {
    let merged = layers.build_cloned().map_err(assemble)?;
    merged.try_deserialize().map_err(|err| {
        let (key, problem) = split_error(err);
        match key {
            Some(key) => ConfigError::InvalidValue {
                origin: origin_of(&key),
                key,
                problem,
            },
            None => ConfigError::Assemble(problem),
        }
    })
}

/// The key and the problem of an error from `config`'s deserializer.
fn split_error(err: config::ConfigError) -> (Option<String>, String) {
    match err {
        config::ConfigError::At { error, key, .. } => {
            let (inner, problem) = split_error(*error);
            (key.or(inner), problem)
        }
        // Said without the value, which may be a secret.
        config::ConfigError::Type { key, expected, .. } => (key, format!("expected {expected}")),
        config::ConfigError::NotFound(key) => (Some(key), "is missing".to_owned()),
        other => (None, one_line(&other.to_string())),
    }
}

fn assemble(err: config::ConfigError) -> ConfigError {
    ConfigError::Assemble(one_line(&err.to_string()))
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
    let pool = &settings.resource_pool;
    if pool.minimum_size > pool.maximum_size {
        return Err(ConfigError::Incomplete {
            key: "resource_pool.minimum_size".to_owned(),
            problem: format!(
                "must not be larger than resource_pool.maximum_size ({} > {})",
                pool.minimum_size, pool.maximum_size
            ),
        });
    }
    Ok(())
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

/// toml's own `Display` spans several lines with a source excerpt, which may show a
/// secret; this is one line with the position and the message.
fn describe_parse_error(text: &str, err: config::ConfigError) -> String {
    let config::ConfigError::FileParse { cause, .. } = err else {
        return one_line(&err.to_string());
    };
    let Some(err) = cause.downcast_ref::<toml::de::Error>() else {
        return one_line(&cause.to_string());
    };
    let message = one_line(err.message());
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

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_map_to_keys() {
        assert_eq!(env_key("PACKAGES__DATABASE__URL"), "database.url");
        assert_eq!(
            env_key("PACKAGES__BLOBSTORE__S3__ACCESS_KEY"),
            "blobstore.s3.access_key"
        );
        assert_eq!(env_key("PACKAGES__SERVER___BIND"), "server._bind");
        assert!(keys::kind(&env_key("PACKAGES__SERVER.BIND")).is_none());
    }

    #[test]
    fn parse_errors_are_one_line_with_a_position() {
        let text = "[server]\nbind = \n";
        let err = config::File::from_str(text, FileFormat::Toml)
            .collect()
            .unwrap_err();
        let message = describe_parse_error(text, err);
        assert!(!message.contains('\n'), "{message}");
        assert!(message.starts_with("line 2, column "), "{message}");
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn of_several_bad_variables_the_same_one_is_reported() {
        let mut bad = vars(&[
            ("PACKAGES__WORKER__CONCURRENCY", "0"),
            ("PACKAGES__DATABASE__POOL_SIZE", "x"),
            ("PACKAGES__LOG__FORMAT", "yaml"),
            ("PACKAGES__QUEUE__PREFIX", "a b"),
        ]);
        let first = load_from(None, bad.clone()).unwrap_err().to_string();
        for _ in 0..8 {
            bad.rotate_left(1);
            let again = load_from(None, bad.clone()).unwrap_err().to_string();
            assert_eq!(again, first);
        }
    }

    #[test]
    fn a_bad_file_value_is_reported_even_when_a_variable_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("packages.toml");
        std::fs::write(&path, "[database]\npool_size = 0\n").unwrap();
        let env = vars(&[("PACKAGES__DATABASE__POOL_SIZE", "4")]);
        let err = load_from(Some(&path), env).unwrap_err();
        assert_eq!(err.key(), Some("database.pool_size"));
        let origin = format!("(in config file '{}')", path.display());
        assert!(err.to_string().ends_with(&origin), "{err}");
    }
}
