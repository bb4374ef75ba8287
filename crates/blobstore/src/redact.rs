//! Keeps presigned URLs out of logs and error texts: their query string is a bearer
//! credential (signature, access key id, expiry) for the object it names.

/// `text` with the query string and fragment of every `http://` or `https://` URL in it
/// removed (`https://h/k?X-Amz-Signature=…` becomes `https://h/k`).
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        let (before, url_on) = rest.split_at(start);
        out.push_str(before);
        let end = url_on
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']'))
            .unwrap_or(url_on.len());
        let (url, after) = url_on.split_at(end);
        let cut = url.find(['?', '#']).unwrap_or(url.len());
        out.push_str(&url[..cut]);
        rest = after;
    }
    out.push_str(rest);
    out
}

fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    match (lower.find("http://"), lower.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_urls;

    #[test]
    fn query_strings_of_urls_are_removed() {
        let text = "error sending request for url (http://127.0.0.1:9000/b/gu/id/guid?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=abc): connection refused";
        assert_eq!(
            redact_urls(text),
            "error sending request for url (http://127.0.0.1:9000/b/gu/id/guid): connection refused"
        );
        assert_eq!(
            redact_urls("a HTTPS://h/k?sig=1#f and https://x/y?z b"),
            "a HTTPS://h/k and https://x/y b"
        );
        assert_eq!(redact_urls("no url here?x=1"), "no url here?x=1");
        assert_eq!(redact_urls("\"https://h/k?s=1\""), "\"https://h/k\"");
    }
}
