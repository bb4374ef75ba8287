//! List queries and pagination. The context resources take E2015's `page` and `per_page`
//! only ([`ListQuery`]); the package lists also take GA's ordering and filters
//! ([`PackageListQuery`]).

use crate::selector::LabelSelector;
use crate::time::Timestamp;

/// Largest `per_page` Cloud Controller accepts.
pub const MAX_PER_PAGE: u64 = 5000;
pub const DEFAULT_PER_PAGE: u64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub page: u64,
    pub per_page: u64,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
        }
    }
}

impl ListQuery {
    /// Validates query parameters; the error holds the messages that follow
    /// `The query parameter is invalid: `.
    pub fn parse(pairs: &[(String, String)]) -> Result<ListQuery, Vec<String>> {
        let unknown: Vec<String> = pairs
            .iter()
            .map(|(k, _)| k)
            .filter(|k| *k != "page" && *k != "per_page")
            .fold(Vec::new(), |mut seen, k| {
                let quoted = format!("'{k}'");
                if !seen.contains(&quoted) {
                    seen.push(quoted);
                }
                seen
            });
        if !unknown.is_empty() {
            return Err(vec![format!(
                "Unknown query parameter(s): {}",
                unknown.join(", ")
            )]);
        }
        let value_of = |key: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let mut errors = Vec::new();
        let page = value_of("page").map(|v| positive_integer("Page", v, &mut errors));
        let per_page = value_of("per_page").map(|v| positive_integer("Per page", v, &mut errors));
        if !errors.is_empty() {
            return Err(errors);
        }
        let query = ListQuery {
            page: page.flatten().unwrap_or(1),
            per_page: per_page.flatten().unwrap_or(DEFAULT_PER_PAGE),
        };
        // Checked after the message validations, as Cloud Controller's pagination options do.
        if query.per_page > MAX_PER_PAGE {
            return Err(vec![format!(
                "Per page must be between 1 and {MAX_PER_PAGE}"
            )]);
        }
        Ok(query)
    }

    /// Rows to skip, saturating for absurd page numbers (they just yield an empty page).
    pub fn offset(&self) -> i64 {
        let offset = self.page.saturating_sub(1).saturating_mul(self.per_page);
        i64::try_from(offset).unwrap_or(i64::MAX)
    }

    pub fn limit(&self) -> i64 {
        i64::try_from(self.per_page).unwrap_or(i64::MAX)
    }

    pub fn window(&self, total_results: u64) -> PageWindow {
        let last = total_results.div_ceil(self.per_page).max(1);
        PageWindow {
            total_results,
            total_pages: last,
            per_page: self.per_page,
            first: 1,
            last,
            next: (self.page < last).then(|| self.page + 1),
            previous: (self.page > 1).then(|| self.page - 1),
        }
    }
}

/// Rails' `numericality: { only_integer: true, greater_than: 0 }` with its texts.
fn positive_integer(attribute: &str, raw: &str, errors: &mut Vec<String>) -> Option<u64> {
    let trimmed = raw.trim();
    let is_number = trimmed.parse::<f64>().is_ok_and(f64::is_finite);
    if !is_number {
        errors.push(format!("{attribute} is not a number"));
        return None;
    }
    let digits = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let is_integer = {
        let unsigned = digits.strip_prefix('-').unwrap_or(digits);
        !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit())
    };
    if !is_integer {
        errors.push(format!("{attribute} must be an integer"));
        return None;
    }
    if digits.starts_with('-') || digits.bytes().all(|b| b == b'0') {
        errors.push(format!("{attribute} must be greater than 0"));
        return None;
    }
    // Larger than u64: any such page is past the end anyway.
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

/// What a package list is ordered by (`order_by`); creation order when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderField {
    CreatedAt,
    /// `updated_at`, or `created_at` for a package never updated.
    UpdatedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderBy {
    pub field: OrderField,
    /// Ties are broken by guid in the same direction.
    pub descending: bool,
}

/// A relational operator of `created_ats[lt]=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Lt,
    Lte,
    Gt,
    Gte,
}

/// A `created_ats` or `updated_ats` filter, at second precision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFilter {
    /// Within any of these seconds.
    Within(Vec<Timestamp>),
    /// Every comparison holds.
    Compare(Vec<(Relation, Timestamp)>),
}

/// The GA filters of a package list. `None` filters nothing; `Some(vec![])` (an empty
/// value such as `guids=`) matches nothing. Values are compared as given: a state or type
/// that does not exist simply matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageFilter {
    pub guids: Option<Vec<String>>,
    pub states: Option<Vec<String>>,
    pub types: Option<Vec<String>>,
    pub app_guids: Option<Vec<String>>,
    pub space_guids: Option<Vec<String>>,
    pub organization_guids: Option<Vec<String>>,
    pub label_selector: Option<LabelSelector>,
    pub created_ats: Option<TimeFilter>,
    pub updated_ats: Option<TimeFilter>,
}

/// A validated package list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageListQuery {
    pub page: ListQuery,
    pub order_by: Option<OrderBy>,
    pub filter: PackageFilter,
    /// `app_guid` (singular) on `/v3/packages`: the list is that app's, as if nested.
    pub app_guid: Option<String>,
    /// The filters and `order_by` as the client gave them, echoed in pagination links.
    pub echo: Vec<(String, String)>,
}

/// Page numbers of a result, for the `pagination` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageWindow {
    pub total_results: u64,
    pub total_pages: u64,
    pub per_page: u64,
    pub first: u64,
    pub last: u64,
    pub next: Option<u64>,
    pub previous: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &[(&str, &str)]) -> Result<ListQuery, Vec<String>> {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ListQuery::parse(&pairs)
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse(&[]),
            Ok(ListQuery {
                page: 1,
                per_page: 50
            })
        );
        assert_eq!(
            parse(&[("page", "3"), ("per_page", "2")]),
            Ok(ListQuery {
                page: 3,
                per_page: 2
            })
        );
        assert_eq!(parse(&[("per_page", "5000")]).map(|q| q.per_page), Ok(5000));
    }

    #[test]
    fn unknown_parameters_are_rejected_in_order() {
        assert_eq!(
            parse(&[
                ("invalid", "1"),
                ("page", "1"),
                ("bad", "x"),
                ("invalid", "2")
            ]),
            Err(vec![
                "Unknown query parameter(s): 'invalid', 'bad'".to_string()
            ])
        );
        assert_eq!(
            parse(&[("order_by", "created_at")]),
            Err(vec!["Unknown query parameter(s): 'order_by'".to_string()])
        );
    }

    #[test]
    fn rails_numericality_texts() {
        let one = |q: &[(&str, &str)]| parse(q).unwrap_err().join(", ");
        assert_eq!(one(&[("page", "abc")]), "Page is not a number");
        assert_eq!(one(&[("page", "")]), "Page is not a number");
        assert_eq!(one(&[("page", "1.5")]), "Page must be an integer");
        assert_eq!(one(&[("page", "0")]), "Page must be greater than 0");
        assert_eq!(one(&[("page", "-2")]), "Page must be greater than 0");
        assert_eq!(one(&[("per_page", "x")]), "Per page is not a number");
        assert_eq!(one(&[("per_page", "0")]), "Per page must be greater than 0");
        assert_eq!(
            one(&[("per_page", "5001")]),
            "Per page must be between 1 and 5000"
        );
        assert_eq!(
            one(&[("page", "x"), ("per_page", "0")]),
            "Page is not a number, Per page must be greater than 0"
        );
    }

    #[test]
    fn huge_pages_do_not_overflow() {
        let q = parse(&[("page", "99999999999999999999999"), ("per_page", "5000")]).unwrap();
        assert_eq!(q.offset(), i64::MAX);
        let w = q.window(3);
        assert_eq!(w.next, None);
        assert!(w.previous.is_some());
    }

    #[test]
    fn windows() {
        let q = ListQuery {
            page: 1,
            per_page: 2,
        };
        let w = q.window(3);
        assert_eq!(
            (w.first, w.last, w.next, w.previous, w.total_pages),
            (1, 2, Some(2), None, 2)
        );
        let w = ListQuery {
            page: 2,
            per_page: 2,
        }
        .window(3);
        assert_eq!((w.next, w.previous), (None, Some(1)));
        // Past the end: previous is page - 1, next is null.
        let w = ListQuery {
            page: 7,
            per_page: 2,
        }
        .window(3);
        assert_eq!((w.next, w.previous), (None, Some(6)));
        // No results: one empty page.
        let w = ListQuery::default().window(0);
        assert_eq!((w.last, w.next, w.previous), (1, None, None));
        assert_eq!(
            ListQuery {
                page: 3,
                per_page: 50
            }
            .offset(),
            100
        );
    }
}
