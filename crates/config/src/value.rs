//! Turning one raw value (from the TOML file or from an environment variable) into a typed
//! setting. Errors are the problem only; the caller adds the key and where it came from.

use std::borrow::Cow;
use std::fmt::Display;
use std::net::{Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// One configured value before it is typed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw<'a> {
    /// From the config file: TOML already says whether it is a string, number or boolean.
    Toml(&'a toml::Value),
    /// From the environment: always text, parsed according to the key's type.
    Env(&'a str),
}

/// A string setting. Environment text is taken verbatim, so `12345` or `true` stays text.
pub(crate) fn text(raw: Raw<'_>) -> Result<String, String> {
    match raw {
        Raw::Env(s) => Ok(s.to_owned()),
        Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
        // The value itself is left out: the key may be a secret.
        Raw::Toml(
            other @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
        ) => Err(format!(
            "expected a string, got {}; quote it to use it as text",
            other.type_str()
        )),
        Raw::Toml(other) => Err(format!("expected a string, got {}", other.type_str())),
    }
}

/// An optional string setting: empty means unset, so `PACKAGES__X=` can clear a file value.
pub(crate) fn optional_text(raw: Raw<'_>) -> Result<Option<String>, String> {
    let s = text(raw)?;
    Ok(if s.is_empty() { None } else { Some(s) })
}

/// A string setting that must not be empty.
pub(crate) fn required_text(raw: Raw<'_>) -> Result<String, String> {
    let s = text(raw)?;
    if s.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s)
    }
}

/// Unsigned integer types a setting can have.
pub(crate) trait Unsigned: Copy + Display + PartialOrd + FromStr + TryFrom<i64> {
    const MAX: Self;
}

impl Unsigned for u32 {
    const MAX: Self = u32::MAX;
}

impl Unsigned for u64 {
    const MAX: Self = u64::MAX;
}

impl Unsigned for usize {
    const MAX: Self = usize::MAX;
}

/// An unsigned integer within `min..=max`.
pub(crate) fn integer<T: Unsigned>(raw: Raw<'_>, min: T, max: T) -> Result<T, String> {
    let value: T = match raw {
        Raw::Toml(toml::Value::Integer(i)) => T::try_from(*i).map_err(|_| not_integer(i))?,
        Raw::Toml(other) => {
            return Err(format!(
                "expected a non-negative integer, got {}",
                other.type_str()
            ));
        }
        // Surrounding blanks cannot be meant in a number; a stray newline is common.
        Raw::Env(s) => s
            .trim()
            .parse()
            .map_err(|_| not_integer(&format!("'{s}'")))?,
    };
    if value < min || value > max {
        return Err(if max == T::MAX {
            format!("must be at least {min}, got {value}")
        } else {
            format!("must be between {min} and {max}, got {value}")
        });
    }
    Ok(value)
}

fn not_integer(got: &dyn Display) -> String {
    format!("expected a non-negative integer, got {got}")
}

pub(crate) fn boolean(raw: Raw<'_>) -> Result<bool, String> {
    match raw {
        Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Raw::Toml(other) => Err(format!("expected true or false, got {}", other.type_str())),
        Raw::Env(s) => {
            let t = s.trim();
            if t.eq_ignore_ascii_case("true") {
                Ok(true)
            } else if t.eq_ignore_ascii_case("false") {
                Ok(false)
            } else {
                Err(format!("expected true or false, got '{s}'"))
            }
        }
    }
}

pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("invalid socket address '{s}' (expected IP:PORT, e.g. 127.0.0.1:8080)")
    })
}

/// `http(s)://host[:port][/path]`, returned without trailing slashes so that callers can
/// append `/v3/...` directly.
pub(crate) fn http_url(s: &str) -> Result<String, String> {
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

pub(crate) fn database_url(s: &str) -> Result<String, String> {
    if let Some(path) = s.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(
                "'sqlite://' needs a database path, e.g. sqlite://data/packages.db".to_owned(),
            );
        }
        return Ok(s.to_owned());
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        return Ok(s.to_owned());
    }
    Err(format!(
        "unsupported database URL '{}' (expected sqlite://PATH or postgres://…)",
        redact_url(s)
    ))
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
        assert_eq!(integer::<u32>(Raw::Env(" 16\n"), 1, u32::MAX), Ok(16));
        assert!(integer::<u32>(Raw::Env("-1"), 0, u32::MAX).is_err());
        assert!(integer::<u32>(Raw::Env("4294967296"), 0, u32::MAX).is_err());
        assert!(integer::<u64>(Raw::Env(""), 0, u64::MAX).is_err());
        assert_eq!(boolean(Raw::Env("TRUE")), Ok(true));
        assert_eq!(boolean(Raw::Env("false")), Ok(false));
        assert!(boolean(Raw::Env("1")).is_err());
    }
}
