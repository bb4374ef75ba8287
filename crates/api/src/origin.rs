//! The origin (`scheme://host[:port]`) of a request as its headers describe it, accepted
//! only when it is a plain `http`/`https` origin: links built from it end up in clients.

/// `scheme://host` when `scheme` is `http` or `https` and `host` is a DNS name, an IPv4
/// address or a bracketed IPv6 address, with an optional port.
pub(crate) fn http_origin(scheme: &str, host: &str) -> Option<String> {
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    valid_host(host).then(|| format!("{scheme}://{host}"))
}

fn valid_host(authority: &str) -> bool {
    if authority.is_empty() || authority.len() > 262 {
        return false;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    port_ok && (host.is_empty() && authority.starts_with('[') || dns_name(host))
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters; IPv4
/// addresses pass as well.
fn dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::http_origin;

    #[test]
    fn plain_http_origins_pass() {
        for (scheme, host) in [
            ("http", "127.0.0.1:8080"),
            ("https", "api.example.org"),
            ("HTTPS", "api.example.org:443"),
            ("http", "[::1]:8080"),
            ("http", "[::1]"),
            ("http", "localhost"),
            ("http", "my-host.local."),
        ] {
            assert!(http_origin(scheme, host).is_some(), "{scheme} {host}");
        }
        assert_eq!(
            http_origin("HTTPS", "a.example").as_deref(),
            Some("https://a.example")
        );
    }

    #[test]
    fn other_schemes_and_odd_hosts_are_refused() {
        for (scheme, host) in [
            ("javascript", "a.example"),
            ("ftp", "a.example"),
            ("", "a.example"),
            ("http", ""),
            ("http", "evil.example/path"),
            ("http", "a.example:99999"),
            ("http", "a.example:"),
            ("http", "user@a.example"),
            ("http", "a b"),
            ("http", "<script>"),
            ("http", "[::1"),
            ("http", "[zz]"),
            ("http", "a..example"),
            ("http", "-a.example"),
            ("http", "a.example\r\nX: y"),
        ] {
            assert!(http_origin(scheme, host).is_none(), "{scheme} {host}");
        }
    }
}
