//! Label selectors (`label_selector=env in (prod,staging),!canary`): the requirements a
//! list filter is made of, parsed and checked as Cloud Controller does
//! (`MetadataHelpers`, `LabelSelectorRequirementValidator`).

use crate::metadata::{self, MetadataKey};

/// Most requirements one selector may hold.
pub const MAX_REQUIREMENTS: usize = 50;

pub const MISSING: &str = "Missing label_selector value";
pub const TOO_MANY: &str = "Too many label_selector requirements (maximum is 50)";
pub const INVALID: &str = "Invalid label_selector value";

/// One requirement of a selector; all of a selector's requirements must hold.
///
/// CC reads `key=` and `key!=` as a set of no values: they become `In` and `NotIn` with
/// empty `values` (matching nothing, and everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`, `key==value`: the label is there with that value.
    Equal { key: MetadataKey, value: String },
    /// `key!=value`: the label is missing, or has another value.
    NotEqual { key: MetadataKey, value: String },
    /// `key in (a,b)`: the label is there with one of the values.
    In {
        key: MetadataKey,
        values: Vec<String>,
    },
    /// `key notin (a,b)`: the label is missing, or has none of the values.
    NotIn {
        key: MetadataKey,
        values: Vec<String>,
    },
    /// `key`: the label is there.
    Exists { key: MetadataKey },
    /// `!key`: the label is missing.
    NotExists { key: MetadataKey },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

/// Parses a `label_selector` value. The error is the text that follows
/// `The query parameter is invalid: `; several bad requirements give several messages,
/// joined with `", "` as every list error is.
pub fn parse(raw: &str) -> Result<LabelSelector, String> {
    parse_all(raw).map_err(|errors| errors.join(", "))
}

/// [`parse`] with one message per bad requirement, in selector order.
pub fn parse_all(raw: &str) -> Result<LabelSelector, Vec<String>> {
    let parts = split_requirements(raw);
    if parts.is_empty() {
        return Err(vec![MISSING.into()]);
    }
    if parts.len() > MAX_REQUIREMENTS {
        return Err(vec![TOO_MANY.into()]);
    }
    let mut errors = Vec::new();
    let mut requirements = Vec::new();
    for part in parts {
        match requirement(part) {
            Ok(r) => requirements.push(r),
            Err(message) => errors.push(message),
        }
    }
    if errors.is_empty() {
        Ok(LabelSelector(requirements))
    } else {
        Err(errors)
    }
}

/// CC's `REQUIREMENT_SPLITTER` scan, `/(?:\(.*?\)|[^,])+/`: runs of characters other than
/// `,`, where `(` up to the next `)` (on the same line) counts as one unit, commas and all.
/// Empty runs are skipped, so `a,,b` and `a,` hold two and one requirements.
fn split_requirements(raw: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let start = at;
        while let Some(c) = raw[at..].chars().next() {
            if c == ',' {
                break;
            }
            at += c.len_utf8();
            if c == '(' {
                let rest = &raw[at..];
                if let Some(close) = rest.find([')', '\n'])
                    && rest[close..].starts_with(')')
                {
                    at += close + 1;
                }
            }
        }
        if at > start {
            parts.push(&raw[start..at]);
        } else {
            at += 1;
        }
    }
    parts
}

#[derive(Clone, Copy)]
enum Operator {
    In,
    NotIn,
    Equal,
    NotEqual,
    Exists,
    NotExists,
}

/// `[A-Za-z0-9_./-]`, CC's `KEY_CHARACTERS`.
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// The longest run of key characters at the start, and what follows.
fn split_key(s: &str) -> (&str, &str) {
    let end = s.find(|c| !is_key_char(c)).unwrap_or(s.len());
    s.split_at(end)
}

/// `key in (values)` and `key notin (values)`: the key is whatever precedes the first
/// separator (lazy `.*?`), and the values run to the closing `)` that ends the text. Ruby's
/// `.` stops at a newline, so a requirement with one matches neither.
fn set_form<'a>(s: &'a str, separator: &str) -> Option<(&'a str, &'a str)> {
    if s.contains('\n') || !s.ends_with(')') {
        return None;
    }
    let at = s.find(separator)?;
    let values = s.get(at + separator.len()..s.len() - 1)?;
    Some((&s[..at], values))
}

/// Tries CC's patterns in its order; `None` is `Invalid label_selector value`.
fn match_forms(s: &str) -> Option<(&str, Operator, &str)> {
    if let Some((key, values)) = set_form(s, " in (") {
        return Some((key, Operator::In, values));
    }
    if let Some((key, values)) = set_form(s, " notin (") {
        return Some((key, Operator::NotIn, values));
    }
    let (key, rest) = split_key(s);
    if !key.is_empty() && !rest.contains('\n') {
        if let Some(values) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            return Some((key, Operator::Equal, values));
        }
        if let Some(values) = rest.strip_prefix("!=") {
            return Some((key, Operator::NotEqual, values));
        }
        if rest.is_empty() {
            return Some((key, Operator::Exists, ""));
        }
    }
    let (key, rest) = split_key(s.strip_prefix('!')?);
    (!key.is_empty() && rest.is_empty()).then_some((key, Operator::NotExists, ""))
}

fn requirement(s: &str) -> Result<Requirement, String> {
    let (raw_key, operator, raw_values) = match_forms(s).ok_or_else(|| INVALID.to_owned())?;
    if let Some(message) = metadata::key_error(raw_key) {
        return Err(message);
    }
    // Ruby's `split(',')`: trailing empty values are dropped, so `()` holds none.
    let values: Vec<String> = metadata::ruby_split(raw_values, ',')
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(message) = values.iter().find_map(|v| metadata::label_value_error(v)) {
        return Err(message);
    }
    let key = MetadataKey::from_raw(raw_key);
    Ok(match operator {
        Operator::In => Requirement::In { key, values },
        Operator::NotIn => Requirement::NotIn { key, values },
        Operator::Equal => match <[String; 1]>::try_from(values) {
            Ok([value]) => Requirement::Equal { key, value },
            Err(values) => Requirement::In { key, values },
        },
        Operator::NotEqual => match <[String; 1]>::try_from(values) {
            Ok([value]) => Requirement::NotEqual { key, value },
            Err(values) => Requirement::NotIn { key, values },
        },
        Operator::Exists => Requirement::Exists { key },
        Operator::NotExists => Requirement::NotExists { key },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> MetadataKey {
        MetadataKey::from_raw(raw)
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    fn one(raw: &str) -> Requirement {
        let LabelSelector(mut requirements) = parse(raw).unwrap();
        assert_eq!(requirements.len(), 1, "{raw}");
        requirements.remove(0)
    }

    #[test]
    fn every_form() {
        assert_eq!(
            one("env=prod"),
            Requirement::Equal {
                key: key("env"),
                value: "prod".into()
            }
        );
        assert_eq!(
            one("env==prod"),
            Requirement::Equal {
                key: key("env"),
                value: "prod".into()
            }
        );
        assert_eq!(
            one("env!=prod"),
            Requirement::NotEqual {
                key: key("env"),
                value: "prod".into()
            }
        );
        assert_eq!(
            one("env in (prod,staging)"),
            Requirement::In {
                key: key("env"),
                values: strings(&["prod", "staging"])
            }
        );
        assert_eq!(
            one("env notin (prod,staging)"),
            Requirement::NotIn {
                key: key("env"),
                values: strings(&["prod", "staging"])
            }
        );
        assert_eq!(one("env"), Requirement::Exists { key: key("env") });
        assert_eq!(one("!env"), Requirement::NotExists { key: key("env") });
        assert_eq!(
            one("example.com/team=web"),
            Requirement::Equal {
                key: MetadataKey {
                    prefix: Some("example.com".into()),
                    name: "team".into()
                },
                value: "web".into()
            }
        );
    }

    #[test]
    fn empty_value_sets() {
        assert_eq!(
            one("env="),
            Requirement::In {
                key: key("env"),
                values: vec![]
            }
        );
        assert_eq!(
            one("env!="),
            Requirement::NotIn {
                key: key("env"),
                values: vec![]
            }
        );
        assert_eq!(
            one("env in ()"),
            Requirement::In {
                key: key("env"),
                values: vec![]
            }
        );
        assert_eq!(
            one("env in (,a,)"),
            Requirement::In {
                key: key("env"),
                values: strings(&["", "a"])
            }
        );
    }

    #[test]
    fn commas_inside_parentheses_do_not_split() {
        assert_eq!(
            parse("env in (prod,staging),!canary,tier=web,,"),
            Ok(LabelSelector(vec![
                Requirement::In {
                    key: key("env"),
                    values: strings(&["prod", "staging"])
                },
                Requirement::NotExists { key: key("canary") },
                Requirement::Equal {
                    key: key("tier"),
                    value: "web".into()
                },
            ]))
        );
        assert_eq!(
            split_requirements("a in (x,y),b notin (z),c"),
            ["a in (x,y)", "b notin (z)", "c"]
        );
        // Without a closing parenthesis `(` is an ordinary character.
        assert_eq!(split_requirements("a in (x,y"), ["a in (x", "y"]);
        assert_eq!(split_requirements(",,"), Vec::<&str>::new());
    }

    #[test]
    fn error_table() {
        assert_eq!(parse(""), Err(MISSING.into()));
        assert_eq!(parse(",,"), Err(MISSING.into()));
        let fifty = vec!["a"; 50].join(",");
        assert!(parse(&fifty).is_ok());
        assert_eq!(parse(&format!("{fifty},b")), Err(TOO_MANY.into()));
        assert_eq!(
            TOO_MANY,
            "Too many label_selector requirements (maximum is 50)"
        );
        for bad in [
            "env in prod",
            "!!env",
            "=x",
            "env in(prod)",
            "a b",
            "!",
            "env=a\nb",
        ] {
            assert_eq!(parse(bad), Err(INVALID.into()), "{bad:?}");
        }
        assert_eq!(parse("a/b/c=x"), Err("key has more than one '/'".into()));
        assert_eq!(
            parse("a=a b"),
            Err("'a b' contains invalid characters".into())
        );
        assert_eq!(
            parse("a b in (x)"),
            Err("'a b' contains invalid characters".into())
        );
        assert_eq!(
            parse("env  in (prod)"),
            Err("'env ' contains invalid characters".into())
        );
        assert_eq!(parse(" in (x)"), Err("key cannot be empty string".into()));
        assert_eq!(
            parse("cloudfoundry.org/a"),
            Err("prefix 'cloudfoundry.org' is reserved".into())
        );
        assert_eq!(
            parse("env in (ok,-bad,b@d)"),
            Err("'-bad' starts or ends with invalid characters".into())
        );
        assert_eq!(
            parse("a=(b,c)"),
            Err("'(b' contains invalid characters".into())
        );
        // One message per bad requirement.
        assert_eq!(
            parse("!!a,ok,b=c d,!!e"),
            Err(
                "Invalid label_selector value, 'c d' contains invalid characters, Invalid label_selector value"
                    .into()
            )
        );
    }
}
