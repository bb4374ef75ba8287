//! `X-VCAP-Request-ID`: the id that ties a request's log lines to the job it caused.

/// The response's request id: `<incoming>::<fresh>` when the caller sent one (only
/// `[A-Za-z0-9_-]` kept, cut to 255 characters), else the fresh id alone.
pub fn derive(incoming: Option<&str>, fresh: &str) -> String {
    let cleaned: String = incoming
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(255)
        .collect();
    if cleaned.is_empty() {
        fresh.to_owned()
    } else {
        format!("{cleaned}::{fresh}")
    }
}

#[cfg(test)]
mod tests {
    use super::derive;

    #[test]
    fn incoming_ids_are_cleaned_and_extended() {
        assert_eq!(derive(None, "n"), "n");
        assert_eq!(derive(Some("abc-1_2"), "n"), "abc-1_2::n");
        assert_eq!(derive(Some("a b\n<c>;"), "n"), "abc::n");
        assert_eq!(derive(Some("!!"), "n"), "n");
        let long = "x".repeat(300);
        assert_eq!(derive(Some(&long), "n"), format!("{}::n", "x".repeat(255)));
    }
}
