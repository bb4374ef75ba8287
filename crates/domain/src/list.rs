//! List queries and pagination. The context resources take E2015's `page` and `per_page`
//! only ([`ListQuery`]); the package lists also take GA's ordering and filters
//! ([`PackageListQuery`]).

use crate::selector::{self, LabelSelector};
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
    /// Always `None` on [`ListRoute::AppPackages`], where the path names the app.
    pub app_guid: Option<String>,
    /// The filters and `order_by` the client gave, unencoded, for pagination links (see
    /// [`link_query`]). As CC echoes them: list values re-joined from their elements
    /// (`states=READY, FAILED` → `READY,FAILED`; a comma inside an element as `%2C`),
    /// `created_ats[lt]` under that key, and `order_by` with its direction spelled out
    /// (`created_at` → `+created_at`). `page`, `per_page` and `app_guid` are not in it.
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

/// The list a GA query is for: the nested route refuses the filters that would name
/// another app, space or organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRoute {
    /// `GET /v3/packages`
    AllPackages,
    /// `GET /v3/apps/:guid/packages`
    AppPackages,
}

/// What `/v3/packages` and `/v3/apps/:guid/packages` take, in CC's order (the order the
/// `Valid parameters are:` text lists them in).
pub const PACKAGE_LIST_PARAMETERS: &[&str] = &[
    "page",
    "per_page",
    "order_by",
    "created_ats",
    "updated_ats",
    "guids",
    "states",
    "types",
    "app_guids",
    "app_guid",
    "space_guids",
    "organization_guids",
    "label_selector",
];

/// What `/v3/packages/:guid/droplets` takes: CC's droplet list parameters.
pub const DROPLET_LIST_PARAMETERS: &[&str] = &[
    "page",
    "per_page",
    "order_by",
    "created_ats",
    "updated_ats",
    "guids",
    "app_guid",
    "app_guids",
    "current",
    "organization_guids",
    "package_guid",
    "space_guids",
    "states",
    "label_selector",
];

/// Parameters that a list nested under an app refuses (CC's `app_nested_request` order).
const NOT_NESTED: [&str; 3] = ["app_guids", "organization_guids", "space_guids"];

/// One parameter after Rack-style parsing: `created_ats=…`, or the operators of
/// `created_ats[lt]=…&created_ats[gt]=…`.
enum Param<'a> {
    Plain(&'a str),
    Operators(Vec<(&'a str, &'a str)>),
}

/// The query as Rack hands it to CC: one entry per name in order of first appearance, the
/// last value winning, and `created_ats[op]` / `updated_ats[op]` gathered under their
/// name. Any other name with brackets is kept whole (and so unknown).
struct Params<'a>(Vec<(&'a str, Param<'a>)>);

impl<'a> Params<'a> {
    fn new(pairs: &'a [(String, String)]) -> Self {
        let mut params: Vec<(&'a str, Param<'a>)> = Vec::new();
        for (key, value) in pairs {
            let (name, param) = match operator_key(key) {
                Some((name, op)) => (name, Param::Operators(vec![(op, value.as_str())])),
                None => (key.as_str(), Param::Plain(value.as_str())),
            };
            match params.iter_mut().find(|(n, _)| *n == name) {
                None => params.push((name, param)),
                Some((_, existing)) => match (existing, param) {
                    (Param::Operators(ops), Param::Operators(new)) => {
                        for (op, value) in new {
                            match ops.iter_mut().find(|(o, _)| *o == op) {
                                Some(slot) => slot.1 = value,
                                None => ops.push((op, value)),
                            }
                        }
                    }
                    (existing, param) => *existing = param,
                },
            }
        }
        Params(params)
    }

    fn get(&self, name: &str) -> Option<&Param<'a>> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, p)| p)
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn plain(&self, name: &str) -> Option<&'a str> {
        match self.get(name) {
            Some(Param::Plain(v)) => Some(v),
            _ => None,
        }
    }

    fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.0.iter().map(|(n, _)| *n)
    }
}

/// `created_ats[lt]` → (`created_ats`, `lt`).
fn operator_key(key: &str) -> Option<(&str, &str)> {
    ["created_ats", "updated_ats"].into_iter().find_map(|name| {
        let op = key
            .strip_prefix(name)?
            .strip_prefix('[')?
            .strip_suffix(']')?;
        (!op.contains(['[', ']'])).then_some((name, op))
    })
}

/// Ruby's `blank?` for a string.
fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// CC's list splitting (`BaseMessage.to_array!`): split on `,` and the whitespace after it
/// (`/,\s*/`, trailing empty elements kept), then each element percent-decoded. The pairs
/// given to the parsers are already decoded once, as Rack's are, so this is a second
/// decoding exactly as in CC: `%2C` in a URL separates elements, `%252C` puts a comma
/// inside one. An empty value is one empty element.
fn split_list(value: &str) -> Vec<String> {
    let mut elements = Vec::new();
    let mut rest = value;
    loop {
        match rest.find(',') {
            Some(at) => {
                elements.push(percent_decode(&rest[..at]));
                rest = rest[at + 1..].trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
            }
            None => {
                elements.push(percent_decode(rest));
                return elements;
            }
        }
    }
}

/// `Addressable::URI.unescape`: every `%XX` becomes its byte, anything else stays. Bytes
/// that do not form UTF-8 are replaced (such an element matches nothing anyway).
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How CC's pagination links show a list: elements joined with `,`, a comma inside an
/// element written `%2C` (`BaseMessage#to_param_hash`).
fn echo_list(elements: &[String]) -> String {
    elements
        .iter()
        .map(|e| e.replace(',', "%2C"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Ruby's `CGI.escape`, which Rails' `to_query` uses: unreserved characters stay, a space
/// becomes `+`, every other byte `%XX`.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query string of a pagination link: the echoed filters and `order_by`, `page` and
/// `per_page`, each `key=value` form-encoded and sorted as Rails' `to_query` sorts them
/// (`label_selector=fruit%3Dstrawberry&page=1&per_page=50&states=READY%2CFAILED`). With
/// nothing echoed it is today's `page=1&per_page=50`.
pub fn link_query(echo: &[(String, String)], page: u64, per_page: u64) -> String {
    let mut pairs: Vec<String> = echo
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    pairs.push(format!("page={page}"));
    pairs.push(format!("per_page={per_page}"));
    pairs.sort();
    pairs.join("&")
}

/// `page` and `per_page` with E2015's texts; unlike [`ListQuery::parse`] the bound on
/// `per_page` is reported with the other errors, as CC GA's validator does.
fn paging(params: &Params<'_>, errors: &mut Vec<String>) -> ListQuery {
    let page = params
        .plain("page")
        .and_then(|v| positive_integer("Page", v, errors));
    let per_page = params
        .plain("per_page")
        .and_then(|v| positive_integer("Per page", v, errors));
    if per_page.is_some_and(|p| p > MAX_PER_PAGE) {
        errors.push(format!("Per page must be between 1 and {MAX_PER_PAGE}"));
    }
    ListQuery {
        page: page.unwrap_or(1),
        per_page: per_page.unwrap_or(DEFAULT_PER_PAGE),
    }
}

pub const ORDER_BY_INVALID: &str = "Order by can only be: 'created_at', 'updated_at'";

/// `order_by`: blank means not given (CC checks it only when `present?`).
fn order_by(params: &Params<'_>, errors: &mut Vec<String>) -> Option<OrderBy> {
    let raw = params.plain("order_by").filter(|v| !is_blank(v))?;
    let (descending, field) = match raw.as_bytes().first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    let field = match field {
        "created_at" => OrderField::CreatedAt,
        "updated_at" => OrderField::UpdatedAt,
        _ => {
            errors.push(ORDER_BY_INVALID.into());
            return None;
        }
    };
    Some(OrderBy { field, descending })
}

impl OrderBy {
    /// As pagination links echo it: always with its direction (`+created_at`).
    pub fn param(&self) -> String {
        let field = match self.field {
            OrderField::CreatedAt => "created_at",
            OrderField::UpdatedAt => "updated_at",
        };
        format!("{}{field}", if self.descending { '-' } else { '+' })
    }
}

pub const TIMESTAMP_FORMAT: &str =
    "has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'";

impl Relation {
    fn parse(op: &str) -> Option<Relation> {
        match op {
            "lt" => Some(Relation::Lt),
            "lte" => Some(Relation::Lte),
            "gt" => Some(Relation::Gt),
            "gte" => Some(Relation::Gte),
            _ => None,
        }
    }
}

/// `created_ats` / `updated_ats` with CC's `TimestampValidator` texts (one message per
/// bad timestamp or operator, as CC adds them); `attribute` is `Created ats`.
fn time_filter(
    name: &str,
    attribute: &str,
    params: &Params<'_>,
    errors: &mut Vec<String>,
    echo: &mut Vec<(String, String)>,
) -> Option<TimeFilter> {
    let before = errors.len();
    let filter = match params.get(name)? {
        Param::Plain(value) => {
            let elements = split_list(value);
            echo.push((name.to_owned(), echo_list(&elements)));
            let mut within = Vec::new();
            for element in &elements {
                match Timestamp::parse(element) {
                    Some(t) => within.push(t),
                    None => errors.push(format!("{attribute} {TIMESTAMP_FORMAT}")),
                }
            }
            TimeFilter::Within(within)
        }
        Param::Operators(ops) => {
            let mut compare = Vec::new();
            for (op, value) in ops {
                echo.push((format!("{name}[{op}]"), (*value).to_owned()));
                let relation = Relation::parse(op);
                if relation.is_none() {
                    errors.push(format!("{attribute} Invalid relational operator: '{op}'"));
                }
                if value.contains(',') {
                    errors.push(format!(
                        "{attribute} only accepts one value when using a relational operator"
                    ));
                    continue;
                }
                match (relation, Timestamp::parse(value)) {
                    (Some(relation), Some(t)) => compare.push((relation, t)),
                    (_, None) => errors.push(format!("{attribute} {TIMESTAMP_FORMAT}")),
                    (None, Some(_)) => {}
                }
            }
            TimeFilter::Compare(compare)
        }
    };
    (errors.len() == before).then_some(filter)
}

/// `Unknown query parameter(s): 'foo', 'bar'. Valid parameters are: …`
fn unknown_parameters(params: &Params<'_>, valid: &[&str], errors: &mut Vec<String>) {
    let unknown: Vec<&str> = params.names().filter(|n| !valid.contains(n)).collect();
    if !unknown.is_empty() {
        errors.push(format!(
            "Unknown query parameter(s): '{}'. Valid parameters are: '{}'",
            unknown.join("', '"),
            valid.join("', '")
        ));
    }
}

/// Named parameters the route refuses, without the list of valid ones (as CC words it).
fn refused_parameters(params: &Params<'_>, refused: &[&str], errors: &mut Vec<String>) {
    let given: Vec<&str> = refused.iter().copied().filter(|n| params.has(n)).collect();
    if !given.is_empty() {
        errors.push(format!(
            "Unknown query parameter(s): '{}'",
            given.join("', '")
        ));
    }
}

/// What every GA list takes, and what its links echo so far.
struct Common {
    page: ListQuery,
    order_by: Option<OrderBy>,
    created_ats: Option<TimeFilter>,
    updated_ats: Option<TimeFilter>,
    label_selector: Option<LabelSelector>,
    echo: Vec<(String, String)>,
}

/// The rules every GA list shares, in CC's error order: paging, `order_by`, `created_ats`,
/// `updated_ats`, `label_selector`, unknown parameters.
fn common(params: &Params<'_>, valid: &[&str], errors: &mut Vec<String>) -> Common {
    let mut echo = Vec::new();
    let page = paging(params, errors);
    let order_by = order_by(params, errors);
    let created_ats = time_filter("created_ats", "Created ats", params, errors, &mut echo);
    let updated_ats = time_filter("updated_ats", "Updated ats", params, errors, &mut echo);
    let label_selector = params.plain("label_selector").and_then(|raw| {
        echo.push(("label_selector".into(), raw.to_owned()));
        selector::parse_all(raw).map_err(|e| errors.extend(e)).ok()
    });
    unknown_parameters(params, valid, errors);
    if let Some(order_by) = &order_by {
        echo.push(("order_by".into(), order_by.param()));
    }
    Common {
        page,
        order_by,
        created_ats,
        updated_ats,
        label_selector,
        echo,
    }
}

impl PackageListQuery {
    /// Validates a GA package list query. `pairs` are the query's names and values,
    /// percent-decoded once (as every route's are); list values are split and decoded once
    /// more here, as CC does. The error holds the messages that follow
    /// `The query parameter is invalid: `, in CC's order (spec 7.7).
    pub fn parse(
        pairs: &[(String, String)],
        route: ListRoute,
    ) -> Result<PackageListQuery, Vec<String>> {
        let params = Params::new(pairs);
        let mut errors = Vec::new();
        let Common {
            page,
            order_by,
            created_ats,
            updated_ats,
            label_selector,
            mut echo,
        } = common(&params, PACKAGE_LIST_PARAMETERS, &mut errors);
        // `app_guid` nests the list under that app, as CC's sub-resource routing does; on
        // the nested route the path's guid wins.
        let app_guid = match route {
            ListRoute::AllPackages => params
                .plain("app_guid")
                .filter(|v| !is_blank(v))
                .map(str::to_owned),
            ListRoute::AppPackages => None,
        };
        if route == ListRoute::AppPackages || app_guid.is_some() {
            refused_parameters(&params, &NOT_NESTED, &mut errors);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut list = |name: &str| {
            params.plain(name).map(|value| {
                let elements = split_list(value);
                echo.push((name.to_owned(), echo_list(&elements)));
                if value.is_empty() {
                    Vec::new()
                } else {
                    elements
                }
            })
        };
        let filter = PackageFilter {
            guids: list("guids"),
            states: list("states"),
            types: list("types"),
            app_guids: list("app_guids"),
            space_guids: list("space_guids"),
            organization_guids: list("organization_guids"),
            label_selector,
            created_ats,
            updated_ats,
        };
        Ok(PackageListQuery {
            page,
            order_by,
            filter,
            app_guid,
            echo,
        })
    }

    /// The query string of the link to page `page` of this list (see [`link_query`]).
    pub fn link_query(&self, page: u64) -> String {
        link_query(&self.echo, page, self.page.per_page)
    }
}

/// A validated `GET /v3/packages/:guid/droplets` query. Packages here never have
/// droplets, so its filters select nothing; they are validated as CC's droplet list does
/// and echoed in the links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropletListQuery {
    pub page: ListQuery,
    pub order_by: Option<OrderBy>,
    /// As [`PackageListQuery::echo`]; `app_guid` and `package_guid` are not echoed.
    pub echo: Vec<(String, String)>,
}

const DROPLET_LISTS: [&str; 5] = [
    "guids",
    "app_guids",
    "organization_guids",
    "space_guids",
    "states",
];

impl DropletListQuery {
    /// Validates the query as [`PackageListQuery::parse`] does, with the droplet list's
    /// parameters; `current` (meaningful only under an app) is refused last.
    pub fn parse(pairs: &[(String, String)]) -> Result<DropletListQuery, Vec<String>> {
        let params = Params::new(pairs);
        let mut errors = Vec::new();
        let Common {
            page,
            order_by,
            mut echo,
            ..
        } = common(&params, DROPLET_LIST_PARAMETERS, &mut errors);
        refused_parameters(&params, &["current"], &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        for name in DROPLET_LISTS {
            if let Some(value) = params.plain(name) {
                echo.push((name.to_owned(), echo_list(&split_list(value))));
            }
        }
        Ok(DropletListQuery {
            page,
            order_by,
            echo,
        })
    }

    /// The query string of the link to page `page` (see [`link_query`]).
    pub fn link_query(&self, page: u64) -> String {
        link_query(&self.echo, page, self.page.per_page)
    }
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

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn packages(query: &[(&str, &str)]) -> Result<PackageListQuery, Vec<String>> {
        PackageListQuery::parse(&pairs(query), ListRoute::AllPackages)
    }

    fn app_packages(query: &[(&str, &str)]) -> Result<PackageListQuery, Vec<String>> {
        PackageListQuery::parse(&pairs(query), ListRoute::AppPackages)
    }

    fn package_errors(query: &[(&str, &str)]) -> String {
        packages(query).unwrap_err().join(", ")
    }

    const VALID: &str = "Valid parameters are: 'page', 'per_page', 'order_by', 'created_ats', 'updated_ats', 'guids', 'states', 'types', 'app_guids', 'app_guid', 'space_guids', 'organization_guids', 'label_selector'";

    fn t(raw: &str) -> Timestamp {
        Timestamp::parse(raw).unwrap()
    }

    #[test]
    fn ga_defaults_keep_todays_links() {
        let q = packages(&[]).unwrap();
        assert_eq!(q.page, ListQuery::default());
        assert_eq!(q.order_by, None);
        assert_eq!(q.filter, PackageFilter::default());
        assert_eq!(q.app_guid, None);
        assert_eq!(q.link_query(1), "page=1&per_page=50");
        let q = packages(&[("page", "3"), ("per_page", "2")]).unwrap();
        assert_eq!(q.link_query(2), "page=2&per_page=2");
    }

    #[test]
    fn filters() {
        let q = packages(&[
            ("guids", "g1,g2"),
            ("states", "READY, FAILED"),
            ("types", "zip"),
            ("app_guids", "a1"),
            ("space_guids", "s1,,s2,"),
            ("organization_guids", ""),
            ("label_selector", "env in (prod,staging),!canary"),
        ])
        .unwrap();
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(q.filter.guids, list(&["g1", "g2"]));
        assert_eq!(q.filter.states, list(&["READY", "FAILED"]));
        assert_eq!(q.filter.types, list(&["zip"]));
        assert_eq!(q.filter.app_guids, list(&["a1"]));
        assert_eq!(q.filter.space_guids, list(&["s1", "", "s2", ""]));
        // An empty value matches nothing.
        assert_eq!(q.filter.organization_guids, Some(vec![]));
        assert_eq!(
            q.filter.label_selector,
            Some(selector::parse("env in (prod,staging),!canary").unwrap())
        );
        assert_eq!(
            q.link_query(1),
            "app_guids=a1&guids=g1%2Cg2&label_selector=env+in+%28prod%2Cstaging%29%2C%21canary&organization_guids=&page=1&per_page=50&space_guids=s1%2C%2Cs2%2C&states=READY%2CFAILED&types=zip"
        );
    }

    #[test]
    fn spec_link_example() {
        let q = packages(&[
            ("states", "READY,FAILED"),
            ("label_selector", "fruit=strawberry"),
        ])
        .unwrap();
        assert_eq!(
            q.link_query(1),
            "label_selector=fruit%3Dstrawberry&page=1&per_page=50&states=READY%2CFAILED"
        );
    }

    #[test]
    fn list_elements_are_decoded_once_more() {
        // The caller decoded `a%252Cb` to `a%2Cb`: one element holding a comma, echoed as
        // CC does.
        let q = packages(&[("guids", "a%2Cb,c%41")]).unwrap();
        assert_eq!(
            q.filter.guids,
            Some(vec!["a,b".to_string(), "cA".to_string()])
        );
        assert_eq!(q.link_query(1), "guids=a%252Cb%2CcA&page=1&per_page=50");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(split_list(""), vec![String::new()]);
        assert_eq!(split_list("a,\t b"), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn the_last_value_wins() {
        let q = packages(&[("states", "READY"), ("states", "FAILED")]).unwrap();
        assert_eq!(q.filter.states, Some(vec!["FAILED".to_string()]));
    }

    #[test]
    fn order_by() {
        let order = |v: &str| packages(&[("order_by", v)]).map(|q| (q.order_by, q.link_query(1)));
        assert_eq!(
            order("created_at"),
            Ok((
                Some(OrderBy {
                    field: OrderField::CreatedAt,
                    descending: false
                }),
                "order_by=%2Bcreated_at&page=1&per_page=50".into()
            ))
        );
        assert_eq!(
            order("+updated_at").unwrap().0,
            Some(OrderBy {
                field: OrderField::UpdatedAt,
                descending: false
            })
        );
        assert_eq!(
            order("-created_at"),
            Ok((
                Some(OrderBy {
                    field: OrderField::CreatedAt,
                    descending: true
                }),
                "order_by=-created_at&page=1&per_page=50".into()
            ))
        );
        assert_eq!(order(""), Ok((None, "page=1&per_page=50".into())));
        for bad in [
            " created_at",
            "id",
            "guid",
            "-",
            "--created_at",
            "created_at ",
        ] {
            assert_eq!(
                order(bad),
                Err(vec![
                    "Order by can only be: 'created_at', 'updated_at'".to_string()
                ]),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn timestamps() {
        let q = packages(&[
            ("created_ats", "2020-01-01T00:00:00Z, 2020-01-02T00:00:00Z"),
            ("updated_ats[gt]", "2020-01-01T00:00:00Z"),
            ("updated_ats[lte]", "2020-02-01T00:00:00Z"),
        ])
        .unwrap();
        assert_eq!(
            q.filter.created_ats,
            Some(TimeFilter::Within(vec![
                t("2020-01-01T00:00:00Z"),
                t("2020-01-02T00:00:00Z")
            ]))
        );
        assert_eq!(
            q.filter.updated_ats,
            Some(TimeFilter::Compare(vec![
                (Relation::Gt, t("2020-01-01T00:00:00Z")),
                (Relation::Lte, t("2020-02-01T00:00:00Z"))
            ]))
        );
        assert_eq!(
            q.link_query(1),
            "created_ats=2020-01-01T00%3A00%3A00Z%2C2020-01-02T00%3A00%3A00Z&page=1&per_page=50&updated_ats%5Bgt%5D=2020-01-01T00%3A00%3A00Z&updated_ats%5Blte%5D=2020-02-01T00%3A00%3A00Z"
        );
        let q = packages(&[
            ("created_ats[lt]", "2020-01-01T00:00:00Z"),
            ("created_ats[gte]", "2019-01-01T00:00:00Z"),
            ("created_ats[lt]", "2021-01-01T00:00:00Z"),
        ])
        .unwrap();
        assert_eq!(
            q.filter.created_ats,
            Some(TimeFilter::Compare(vec![
                (Relation::Lt, t("2021-01-01T00:00:00Z")),
                (Relation::Gte, t("2019-01-01T00:00:00Z"))
            ]))
        );
    }

    #[test]
    fn timestamp_texts() {
        let format = "Created ats has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'";
        assert_eq!(package_errors(&[("created_ats", "yesterday")]), format);
        assert_eq!(package_errors(&[("created_ats", "")]), format);
        assert_eq!(
            package_errors(&[("created_ats", "2020-01-01T00:00:00.5Z")]),
            format
        );
        assert_eq!(
            package_errors(&[("updated_ats[lt]", "2020-01-01")]),
            "Updated ats has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'"
        );
        assert_eq!(
            package_errors(&[("created_ats[foo]", "2020-01-01T00:00:00Z")]),
            "Created ats Invalid relational operator: 'foo'"
        );
        assert_eq!(
            package_errors(&[(
                "created_ats[gt]",
                "2020-01-01T00:00:00Z,2020-01-02T00:00:00Z"
            )]),
            "Created ats only accepts one value when using a relational operator"
        );
        // One message per bad timestamp or operator, as CC adds them.
        assert_eq!(
            package_errors(&[("created_ats", "x,2020-01-01T00:00:00Z,y")]),
            format!("{format}, {format}")
        );
        assert_eq!(
            package_errors(&[("created_ats[eq]", "x")]),
            format!("Created ats Invalid relational operator: 'eq', {format}")
        );
        // Brackets on other names are not operators.
        assert_eq!(
            package_errors(&[("guids[x]", "1")]),
            format!("Unknown query parameter(s): 'guids[x]'. {VALID}")
        );
    }

    #[test]
    fn unknown_parameters_name_the_valid_ones() {
        assert_eq!(
            package_errors(&[("foo", "1"), ("page", "1"), ("bar", "2"), ("foo", "3")]),
            format!("Unknown query parameter(s): 'foo', 'bar'. {VALID}")
        );
        assert_eq!(
            app_packages(&[("foo", "1")]).unwrap_err(),
            vec![format!("Unknown query parameter(s): 'foo'. {VALID}")]
        );
    }

    #[test]
    fn nested_lists_refuse_other_owners() {
        assert_eq!(
            app_packages(&[
                ("space_guids", "s"),
                ("app_guids", "a"),
                ("organization_guids", "o"),
            ])
            .unwrap_err(),
            vec![
                "Unknown query parameter(s): 'app_guids', 'organization_guids', 'space_guids'"
                    .to_string()
            ]
        );
        assert_eq!(
            app_packages(&[("app_guids", "")]).unwrap_err(),
            vec!["Unknown query parameter(s): 'app_guids'".to_string()]
        );
        let q = app_packages(&[("app_guid", "other"), ("states", "READY")]).unwrap();
        assert_eq!(q.app_guid, None);
        assert_eq!(q.link_query(1), "page=1&per_page=50&states=READY");
        // `app_guid` on /v3/packages nests the list.
        let q = packages(&[("app_guid", "G"), ("guids", "p")]).unwrap();
        assert_eq!(q.app_guid.as_deref(), Some("G"));
        assert_eq!(q.link_query(1), "guids=p&page=1&per_page=50");
        assert_eq!(
            package_errors(&[("app_guid", "G"), ("space_guids", "s")]),
            "Unknown query parameter(s): 'space_guids'"
        );
        assert_eq!(packages(&[("app_guid", " ")]).unwrap().app_guid, None);
        assert!(packages(&[("app_guid", ""), ("space_guids", "s")]).is_ok());
    }

    #[test]
    fn paging_keeps_todays_texts() {
        assert_eq!(package_errors(&[("page", "x")]), "Page is not a number");
        assert_eq!(
            package_errors(&[("per_page", "5001")]),
            "Per page must be between 1 and 5000"
        );
        assert_eq!(
            package_errors(&[("page", "0"), ("per_page", "5001")]),
            "Page must be greater than 0, Per page must be between 1 and 5000"
        );
        assert_eq!(
            packages(&[("per_page", "5000")]).unwrap().page.per_page,
            5000
        );
    }

    #[test]
    fn errors_are_joined_in_cc_order() {
        assert_eq!(
            app_packages(&[
                ("app_guids", "a"),
                ("zzz", "1"),
                ("label_selector", ""),
                ("updated_ats", "u"),
                ("created_ats", "c"),
                ("order_by", "id"),
                ("per_page", "0"),
            ])
            .unwrap_err(),
            vec![
                "Per page must be greater than 0".to_string(),
                "Order by can only be: 'created_at', 'updated_at'".into(),
                "Created ats has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'".into(),
                "Updated ats has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'".into(),
                "Missing label_selector value".into(),
                format!("Unknown query parameter(s): 'zzz'. {VALID}"),
                "Unknown query parameter(s): 'app_guids'".into(),
            ]
        );
        assert_eq!(
            package_errors(&[("label_selector", "a b,!!x")]),
            "Invalid label_selector value, Invalid label_selector value"
        );
    }

    #[test]
    fn the_e2015_query_is_unchanged() {
        assert_eq!(
            parse(&[("order_by", "created_at")]),
            Err(vec!["Unknown query parameter(s): 'order_by'".to_string()])
        );
    }

    #[test]
    fn droplet_lists() {
        let droplets = |q: &[(&str, &str)]| DropletListQuery::parse(&pairs(q));
        let q = droplets(&[]).unwrap();
        assert_eq!(q.link_query(1), "page=1&per_page=50");
        let q = droplets(&[
            ("states", "STAGED"),
            ("app_guid", "a"),
            ("package_guid", "p"),
            ("guids", "g"),
            ("app_guids", "x"),
            ("space_guids", "s"),
            ("organization_guids", "o"),
            ("label_selector", "a=b"),
            ("created_ats[lt]", "2020-01-01T00:00:00Z"),
            ("order_by", "-created_at"),
            ("per_page", "10"),
        ])
        .unwrap();
        assert_eq!(q.page.per_page, 10);
        assert_eq!(
            q.link_query(1),
            "app_guids=x&created_ats%5Blt%5D=2020-01-01T00%3A00%3A00Z&guids=g&label_selector=a%3Db&order_by=-created_at&organization_guids=o&page=1&per_page=10&space_guids=s&states=STAGED"
        );
        assert_eq!(
            droplets(&[("current", "true")]).unwrap_err(),
            vec!["Unknown query parameter(s): 'current'".to_string()]
        );
        assert_eq!(
            droplets(&[("current", "true"), ("types", "bits"), ("order_by", "x")]).unwrap_err(),
            vec![
                "Order by can only be: 'created_at', 'updated_at'".to_string(),
                "Unknown query parameter(s): 'types'. Valid parameters are: 'page', 'per_page', 'order_by', 'created_ats', 'updated_ats', 'guids', 'app_guid', 'app_guids', 'current', 'organization_guids', 'package_guid', 'space_guids', 'states', 'label_selector'".into(),
                "Unknown query parameter(s): 'current'".into(),
            ]
        );
    }
}
