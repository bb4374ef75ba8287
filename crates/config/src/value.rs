//! How one configured value becomes a typed setting: the `deserialize_with` functions of
//! the fields of [`crate::Settings`]. Each returns the problem only; the key is added by
//! `config` and where the value came from by the caller.
//!
//! Values arrive either as TOML gave them or as environment text. The key table has
//! already refused a file value of the wrong kind, so a numeric key that sees a string here
//! is reading the environment: numbers and booleans are parsed from text only for keys
//! that are numbers or booleans, and text keys keep text such as `12345` as it is.
//! `config`'s own conversions are not used because they are lenient in ways a secret or a
//! limit should not be (`yes` is true, `true` is 1).

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};

use serde::de::{Deserialize, Deserializer, Error, Visitor};

use crate::settings::{BlobstoreKind, LogFormat, QueueUrl};

/// Shortest HS256 key: RFC 7518 asks for a key at least as long as the hash (256 bits);
/// a short one can be found by brute force and then signs anyone's token.
pub(crate) const MIN_JWT_SECRET_BYTES: usize = 32;

/// Shortest `packages.encryption_key`: the AES-256 key is derived from it, so it should
/// carry at least 256 bits of its own.
pub(crate) const MIN_ENCRYPTION_KEY_BYTES: usize = 32;

/// Shortest `upload.proxy_secret`: it stands between any client and a file on disk.
pub(crate) const MIN_PROXY_SECRET_BYTES: usize = 16;

/// Longest `queue.prefix`, leaving room for suffixes within AMQP's 255-byte names.
const MAX_PREFIX_LEN: usize = 200;

/// An unsigned integer within `MIN..=MAX`.
pub(crate) fn between<'de, const MIN: u64, const MAX: u64, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n = d.deserialize_any(Unsigned)?;
    if n < MIN || n > MAX {
        return Err(D::Error::custom(format!(
            "must be between {MIN} and {MAX}, got {n}"
        )));
    }
    fit(n)
}

/// An unsigned integer of at least `MIN`, bounded only by its type.
pub(crate) fn at_least<'de, const MIN: u64, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n = d.deserialize_any(Unsigned)?;
    if n < MIN {
        return Err(D::Error::custom(format!("must be at least {MIN}, got {n}")));
    }
    fit(n)
}

fn fit<T: TryFrom<u64>, E: Error>(n: u64) -> Result<T, E> {
    T::try_from(n).map_err(|_| E::custom(format!("is too large, got {n}")))
}

/// A TOML integer, or environment text holding one.
struct Unsigned;

impl Visitor<'_> for Unsigned {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: Error>(self, n: u64) -> Result<u64, E> {
        Ok(n)
    }

    fn visit_i64<E: Error>(self, n: i64) -> Result<u64, E> {
        u64::try_from(n).map_err(|_| E::custom(format!("expected a non-negative integer, got {n}")))
    }

    fn visit_str<E: Error>(self, s: &str) -> Result<u64, E> {
        // Surrounding blanks cannot be meant in a number; a stray newline is common.
        s.trim()
            .parse()
            .map_err(|_| E::custom(format!("expected a non-negative integer, got '{s}'")))
    }
}

/// A TOML boolean, or environment text `true`/`false` in any case.
pub(crate) fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Boolean;

    impl Visitor<'_> for Boolean {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }

        fn visit_bool<E: Error>(self, b: bool) -> Result<bool, E> {
            Ok(b)
        }

        fn visit_str<E: Error>(self, s: &str) -> Result<bool, E> {
            let t = s.trim();
            if t.eq_ignore_ascii_case("true") {
                Ok(true)
            } else if t.eq_ignore_ascii_case("false") {
                Ok(false)
            } else {
                Err(E::custom(format!("expected true or false, got '{s}'")))
            }
        }
    }

    d.deserialize_any(Boolean)
}

/// A text setting, checked and typed by `parse`.
fn text<'de, D, T>(d: D, parse: impl FnOnce(String) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    parse(String::deserialize(d)?).map_err(D::Error::custom)
}

/// Empty text means unset, so `PACKAGES__X=` can clear a file value.
fn unless_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A text setting (or a path) that must not be empty.
pub(crate) fn required<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    text(d, |s| {
        if s.trim().is_empty() {
            Err("must not be empty".to_owned())
        } else {
            Ok(T::from(s))
        }
    })
}

/// A text setting (or a path) that may be unset.
pub(crate) fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    text(d, |s| Ok(unless_empty(s).map(T::from)))
}

/// A secret that, when set, has at least `MIN` bytes. The value never reaches the message.
pub(crate) fn secret<'de, const MIN: usize, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    text(d, |s| match unless_empty(s) {
        Some(secret) if secret.len() < MIN => Err(format!(
            "must be at least {MIN} bytes long, got {} (generate one with `openssl rand -hex 32`)",
            secret.len()
        )),
        other => Ok(other),
    })
}

pub(crate) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    text(d, |s| {
        s.parse().map_err(|_| {
            format!("invalid socket address '{s}' (expected IP:PORT, e.g. 127.0.0.1:8080)")
        })
    })
}

/// An optional IP:PORT; empty means unset.
pub(crate) fn optional_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    text(d, |s| match unless_empty(s) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            format!("invalid socket address '{s}' (expected IP:PORT, e.g. 0.0.0.0:8081)")
        }),
    })
}

pub(crate) fn optional_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d, |s| unless_empty(s).map(|u| http_url(&u)).transpose())
}

pub(crate) fn database_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(d, |s| {
        if s == "sqlite://" {
            return Err(
                "'sqlite://' needs a database path, e.g. sqlite://data/packages.db".to_owned(),
            );
        }
        if ["sqlite://", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| s.starts_with(scheme))
        {
            Ok(s)
        } else {
            Err(format!(
                "unsupported database URL '{}' (expected sqlite://PATH or postgres://…)",
                redact_url(&s)
            ))
        }
    })
}

pub(crate) fn queue_url<'de, D: Deserializer<'de>>(d: D) -> Result<QueueUrl, D::Error> {
    text(d, |s| {
        if s == "embedded" {
            Ok(QueueUrl::Embedded)
        } else if s.starts_with("amqp://") || s.starts_with("amqps://") {
            Ok(QueueUrl::Amqp(s))
        } else {
            Err(format!(
                "unsupported queue URL '{}' (expected `embedded` or amqp://user:pass@host:port/vhost)",
                redact_url(&s)
            ))
        }
    })
}

pub(crate) fn queue_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(d, |s| {
        if s.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if s.len() > MAX_PREFIX_LEN {
            return Err(format!(
                "must be at most {MAX_PREFIX_LEN} characters, got {}",
                s.len()
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "'{s}' may contain only letters, digits, '.', '_' and '-'"
            ));
        }
        Ok(s)
    })
}

pub(crate) fn blobstore_kind<'de, D: Deserializer<'de>>(d: D) -> Result<BlobstoreKind, D::Error> {
    text(d, |s| match s.as_str() {
        "local" => Ok(BlobstoreKind::Local),
        "s3" => Ok(BlobstoreKind::S3),
        _ => Err(format!(
            "unknown blobstore kind '{s}' (expected local or s3)"
        )),
    })
}

pub(crate) fn log_format<'de, D: Deserializer<'de>>(d: D) -> Result<LogFormat, D::Error> {
    text(d, |s| match s.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("unknown log format '{s}' (expected text or json)")),
    })
}

/// `http(s)://host[:port][/path]`, returned without trailing slashes so that callers can
/// append `/v3/...` directly.
fn http_url(s: &str) -> Result<String, String> {
    let shown = redact_url(s);
    let rest = strip_prefix_ignore_case(s, "https://")
        .or_else(|| strip_prefix_ignore_case(s, "http://"))
        .ok_or_else(|| format!("'{shown}' is not an http:// or https:// URL"))?;
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{shown}' must not contain whitespace"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("'{shown}' must not have a query or fragment"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("'{shown}' must not contain credentials"));
    }
    let (host, port) =
        split_host_port(authority).ok_or_else(|| format!("'{shown}' has no valid host[:port]"))?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        }
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    });
    if !host_ok || !port_ok {
        return Err(format!("'{shown}' has no valid host[:port]"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Splits `host[:port]`, where host may be a bracketed IPv6 address.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => Some((host, Some(port))),
            None => Some((authority, None)),
        }
    }
}

/// Hides the password of `scheme://user:password@host…`, for error messages and `Debug`.
pub(crate) fn redact_url(url: &str) -> Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_len = url[start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - start);
    let authority = &url[start..start + authority_len];
    let Some(at) = authority.rfind('@') else {
        return Cow::Borrowed(url);
    };
    let Some(colon) = authority[..at].find(':') else {
        return Cow::Borrowed(url);
    };
    Cow::Owned(format!(
        "{}***{}",
        &url[..start + colon + 1],
        &url[start + at..]
    ))
}

#[cfg(test)]
mod tests {
    use config::Value;

    use super::*;

    #[test]
    fn http_urls() {
        assert_eq!(
            http_url("https://api.example.org/").as_deref(),
            Ok("https://api.example.org")
        );
        assert_eq!(
            http_url("HTTP://h:8080/base//").as_deref(),
            Ok("HTTP://h:8080/base")
        );
        assert_eq!(
            http_url("http://[::1]:9000").as_deref(),
            Ok("http://[::1]:9000")
        );
        for bad in [
            "api.example.org",
            "ftp://h",
            "https://",
            "https:///path",
            "http://h:",
            "http://h:99999",
            "http://h:80x",
            "http://h?x=1",
            "http://h#f",
            "http://a b",
            "http://[zz]:1",
            "http://u:p@h",
        ] {
            assert!(http_url(bad).is_err(), "{bad} accepted");
        }
        let err = http_url("http://u:secret@h").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://u:pw@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(redact_url("amqp://u:p@ss@h/v"), "amqp://u:***@h/v");
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact_url("sqlite://data/a@b.db"), "sqlite://data/a@b.db");
        assert_eq!(redact_url("plain"), "plain");
    }

    #[test]
    fn env_numbers_and_booleans() {
        let env = |s: &str| Value::new(None, s);
        assert_eq!(at_least::<1, _, u32>(env(" 16\n")).ok(), Some(16));
        assert!(at_least::<0, _, u32>(env("-1")).is_err());
        assert!(at_least::<0, _, u32>(env("4294967296")).is_err());
        assert!(at_least::<0, _, u64>(env("")).is_err());
        assert_eq!(boolean(env("TRUE")).ok(), Some(true));
        assert_eq!(boolean(env("false")).ok(), Some(false));
        assert!(boolean(env("1")).is_err());
    }
}
