//! JSON bodies. Packages use the superset of section 12 of the spec: every E2015 key as
//! the seed shows it, plus GA's `data.checksum`, `relationships` and `metadata`. Every
//! `href` is absolute.

use std::collections::BTreeMap;

use packages_domain::context::{App, Organization, Role, RoleTarget, Space};
use packages_domain::{MetadataKey, PackageType, Timestamp};
use packages_service::Page;
use packages_service::packages::PackageView;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

/// Builds absolute links from `server.external_url` or the request's scheme and host.
#[derive(Debug, Clone)]
pub struct Links {
    base: String,
}

impl Links {
    pub fn new(base: impl Into<String>) -> Self {
        Links {
            base: base.into().trim_end_matches('/').to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn href(&self, path: &str) -> Value {
        json!({ "href": format!("{}{path}", self.base) })
    }
}

const NO_METADATA: fn() -> Value = || json!({"labels": {}, "annotations": {}});

/// A package's body, serialised straight from the view: every GET renders one, and a
/// `Value` built first cost a map entry and a string per key.
#[derive(Serialize)]
pub struct PackageBody<'a> {
    guid: &'a str,
    #[serde(rename = "type")]
    package_type: &'static str,
    data: PackageData<'a>,
    url: &'a Option<String>,
    state: &'static str,
    created_at: Timestamp,
    updated_at: Option<Timestamp>,
    relationships: AppRelationship<'a>,
    metadata: MetadataBody<'a>,
    links: PackageLinks<'a>,
}

#[derive(Serialize)]
struct PackageData<'a> {
    hash: Digest<'a>,
    checksum: Digest<'a>,
    error: &'a Option<String>,
    // GA's docker keys, present (and maybe null) on docker packages only.
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a Option<String>>,
    /// The password itself never leaves the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<Option<&'static str>>,
}

#[derive(Serialize)]
struct Digest<'a> {
    #[serde(rename = "type")]
    algorithm: &'static str,
    value: &'a Option<String>,
}

#[derive(Serialize)]
struct AppRelationship<'a> {
    app: RelationshipData<'a>,
}

#[derive(Serialize)]
struct RelationshipData<'a> {
    data: Guid<'a>,
}

#[derive(Serialize)]
struct Guid<'a> {
    guid: &'a str,
}

#[derive(Serialize)]
struct PackageLinks<'a> {
    #[serde(rename = "self")]
    this: Href<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload: Option<Action<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    download: Option<Action<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<Action<'a>>,
    app: Href<'a>,
}

#[derive(Serialize)]
struct Href<'a> {
    href: Joined<'a>,
}

#[derive(Serialize)]
struct Action<'a> {
    href: Joined<'a>,
    method: &'static str,
}

/// A link as its pieces, written straight into the body: a list page has hundreds, and
/// a `String` for each was an allocation and a copy.
#[derive(Clone, Copy)]
struct Joined<'a>([&'a str; 4]);

impl std::fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|part| f.write_str(part))
    }
}

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `{"labels": {…}, "annotations": {…}}`, keys with a prefix as `prefix/name`.
#[derive(Serialize)]
struct MetadataBody<'a> {
    #[serde(serialize_with = "metadata_map")]
    labels: &'a BTreeMap<MetadataKey, String>,
    #[serde(serialize_with = "metadata_map")]
    annotations: &'a BTreeMap<MetadataKey, String>,
}

fn metadata_map<S: Serializer>(
    map: &&BTreeMap<MetadataKey, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    struct Key<'k>(&'k MetadataKey);
    impl Serialize for Key<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self.0)
        }
    }
    serializer.collect_map(map.iter().map(|(key, value)| (Key(key), value)))
}

pub fn package<'a>(links: &'a Links, view: &'a PackageView) -> PackageBody<'a> {
    let p = &view.package;
    let path = |suffix| Joined([&links.base, "/v3/packages/", p.guid.as_str(), suffix]);
    let action = |suffix, method| Action {
        href: path(suffix),
        method,
    };
    let bits = p.package_type == PackageType::Bits;
    let docker = p.package_type == PackageType::Docker;
    PackageBody {
        guid: p.guid.as_str(),
        package_type: p.package_type.as_str(),
        data: PackageData {
            hash: Digest {
                algorithm: "sha1",
                value: &p.sha1,
            },
            checksum: Digest {
                algorithm: "sha256",
                value: &p.sha256,
            },
            error: &p.error,
            image: docker.then_some(&p.url),
            username: docker.then_some(&p.docker_username),
            password: docker.then(|| p.docker_username.as_ref().map(|_| "***")),
        },
        url: &p.url,
        state: p.state.as_str(),
        created_at: p.created_at,
        updated_at: p.updated_at,
        relationships: AppRelationship {
            app: RelationshipData {
                data: Guid {
                    guid: p.app_guid.as_str(),
                },
            },
        },
        metadata: MetadataBody {
            labels: &view.metadata.labels,
            annotations: &view.metadata.annotations,
        },
        links: PackageLinks {
            upload: bits.then(|| action("/upload", "POST")),
            download: bits.then(|| action("/download", "GET")),
            stage: bits.then(|| action("/droplets", "POST")),
            this: Href { href: path("") },
            app: Href {
                href: Joined([&links.base, "/v3/apps/", p.app_guid.as_str(), ""]),
            },
        },
    }
}

impl PackageBody<'_> {
    /// Appends the body as compact JSON, byte for byte what `serde_json::to_writer` writes:
    /// the keys and the punctuation are literals, and a value is escaped only when it holds
    /// a character JSON escapes. A list page writes fifty of these, and serde's derived
    /// path escaped every key and every byte of every value, a tenth of the API's CPU.
    pub fn write_compact(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"guid\":");
        string(out, self.guid);
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(self.package_type.as_bytes());
        out.extend_from_slice(b"\",\"data\":{\"hash\":{\"type\":\"");
        out.extend_from_slice(self.data.hash.algorithm.as_bytes());
        out.extend_from_slice(b"\",\"value\":");
        optional(out, self.data.hash.value.as_deref());
        out.extend_from_slice(b"},\"checksum\":{\"type\":\"");
        out.extend_from_slice(self.data.checksum.algorithm.as_bytes());
        out.extend_from_slice(b"\",\"value\":");
        optional(out, self.data.checksum.value.as_deref());
        out.extend_from_slice(b"},\"error\":");
        optional(out, self.data.error.as_deref());
        if let Some(image) = self.data.image {
            out.extend_from_slice(b",\"image\":");
            optional(out, image.as_deref());
        }
        if let Some(username) = self.data.username {
            out.extend_from_slice(b",\"username\":");
            optional(out, username.as_deref());
        }
        if let Some(password) = self.data.password {
            out.extend_from_slice(b",\"password\":");
            optional(out, password);
        }
        out.extend_from_slice(b"},\"url\":");
        optional(out, self.url.as_deref());
        out.extend_from_slice(b",\"state\":\"");
        out.extend_from_slice(self.state.as_bytes());
        out.extend_from_slice(b"\",\"created_at\":");
        timestamp(out, Some(self.created_at));
        out.extend_from_slice(b",\"updated_at\":");
        timestamp(out, self.updated_at);
        out.extend_from_slice(b",\"relationships\":{\"app\":{\"data\":{\"guid\":");
        string(out, self.relationships.app.data.guid);
        out.extend_from_slice(b"}}},\"metadata\":");
        if self.metadata.labels.is_empty() && self.metadata.annotations.is_empty() {
            out.extend_from_slice(b"{\"labels\":{},\"annotations\":{}}");
        } else if serde_json::to_writer(&mut *out, &self.metadata).is_err() {
            // Writing into a Vec cannot fail, nor can plain strings and maps of them.
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"links\":{\"self\":{\"href\":");
        self.links.this.href.write(out);
        out.push(b'}');
        for (key, action) in [
            (&b",\"upload\":{\"href\":"[..], &self.links.upload),
            (b",\"download\":{\"href\":", &self.links.download),
            (b",\"stage\":{\"href\":", &self.links.stage),
        ] {
            if let Some(action) = action {
                out.extend_from_slice(key);
                action.href.write(out);
                out.extend_from_slice(b",\"method\":\"");
                out.extend_from_slice(action.method.as_bytes());
                out.extend_from_slice(b"\"}");
            }
        }
        out.extend_from_slice(b",\"app\":{\"href\":");
        self.links.app.href.write(out);
        out.extend_from_slice(b"}}}");
    }
}

impl Joined<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        if self.0.iter().all(|part| is_plain(part)) {
            out.push(b'"');
            for part in self.0 {
                out.extend_from_slice(part.as_bytes());
            }
            out.push(b'"');
        } else {
            string(out, &self.to_string());
        }
    }
}

/// Whether JSON shows `s` as it is: no quote, backslash or control character (the
/// characters serde_json escapes).
fn is_plain(s: &str) -> bool {
    !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

fn string(out: &mut Vec<u8>, s: &str) {
    if is_plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing into a Vec cannot fail.
        out.extend_from_slice(b"null");
    }
}

fn optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn timestamp(out: &mut Vec<u8>, t: Option<Timestamp>) {
    use std::io::Write;
    // Digits, dashes and colons: nothing to escape.
    let written = match t {
        Some(t) => write!(out, "\"{t}\""),
        None => out.write_all(b"null"),
    };
    debug_assert!(written.is_ok(), "writing into a Vec cannot fail");
}

pub fn organization(links: &Links, o: &Organization) -> Value {
    json!({
        "guid": o.guid,
        "created_at": o.created_at,
        "updated_at": o.updated_at,
        "name": o.name,
        "suspended": o.suspended,
        "metadata": NO_METADATA(),
        "links": {"self": links.href(&format!("/v3/organizations/{}", o.guid))},
    })
}

pub fn space(links: &Links, s: &Space) -> Value {
    json!({
        "guid": s.guid,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "name": s.name,
        "relationships": {"organization": {"data": {"guid": s.organization_guid}}},
        "metadata": NO_METADATA(),
        "links": {
            "self": links.href(&format!("/v3/spaces/{}", s.guid)),
            "organization": links.href(&format!("/v3/organizations/{}", s.organization_guid)),
        },
    })
}

pub fn app(links: &Links, a: &App) -> Value {
    json!({
        "guid": a.guid,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "name": a.name,
        "state": "STOPPED",
        "lifecycle": {"type": "buildpack", "data": {"buildpacks": [], "stack": null}},
        "relationships": {"space": {"data": {"guid": a.space_guid}}},
        "metadata": NO_METADATA(),
        "links": {
            "self": links.href(&format!("/v3/apps/{}", a.guid)),
            "space": links.href(&format!("/v3/spaces/{}", a.space_guid)),
            "packages": links.href(&format!("/v3/apps/{}/packages", a.guid)),
        },
    })
}

pub fn role(links: &Links, r: &Role) -> Value {
    let (space, org, target_link) = match &r.target {
        RoleTarget::Space(g) => (
            json!({"guid": g}),
            Value::Null,
            ("space", format!("/v3/spaces/{g}")),
        ),
        RoleTarget::Organization(g) => (
            Value::Null,
            json!({"guid": g}),
            ("organization", format!("/v3/organizations/{g}")),
        ),
    };
    let mut link_map = serde_json::Map::new();
    link_map.insert("self".into(), links.href(&format!("/v3/roles/{}", r.guid)));
    link_map.insert(target_link.0.into(), links.href(&target_link.1));
    json!({
        "guid": r.guid,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "type": r.role_type.as_str(),
        "relationships": {
            "user": {"data": {"guid": r.user_guid}},
            "space": {"data": space},
            "organization": {"data": org},
        },
        "links": link_map,
    })
}

/// A list: `pagination` (E2015 keys plus GA's `total_pages`) and `resources`.
/// A list page. Each resource is rendered only when the page is serialized, one at a
/// time, so a page of thousands costs its output and one resource, not a tree of them all.
pub fn page<'a, T, P>(
    links: &'a Links,
    path: &str,
    page: &'a Page<T>,
    present: P,
) -> PageBody<'a, T, P>
where
    P: Fn(&Links, &T) -> Value,
{
    PageBody {
        pagination: pagination(links, path, page),
        resources: Resources {
            links,
            items: &page.resources,
            present,
        },
    }
}

/// The `pagination` object of a page whose links start with `path`.
pub fn pagination<T>(links: &Links, path: &str, page: &Page<T>) -> Value {
    let w = &page.window;
    let at = |n: u64| links.href(&format!("{path}?{}", page.link_query(n)));
    json!({
        "total_results": w.total_results,
        "total_pages": w.total_pages,
        "first": at(w.first),
        "last": at(w.last),
        "next": w.next.map(at),
        "previous": w.previous.map(at),
    })
}

/// What [`page`] returns: serializes as `{"pagination": …, "resources": […]}`.
#[derive(serde::Serialize)]
#[serde(bound = "")]
pub struct PageBody<'a, T, P: Fn(&Links, &T) -> Value> {
    pagination: Value,
    resources: Resources<'a, T, P>,
}

struct Resources<'a, T, P> {
    links: &'a Links,
    items: &'a [T],
    present: P,
}

impl<T, P: Fn(&Links, &T) -> Value> serde::Serialize for Resources<'_, T, P> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.items.len()))?;
        for item in self.items {
            seq.serialize_element(&(self.present)(self.links, item))?;
        }
        seq.end()
    }
}

/// `GET /`: enough of Cloud Controller's root document for clients to find the v3 API and
/// the UAA.
pub fn root(links: &Links, uaa_url: Option<&str>) -> Value {
    let uaa = uaa_url.map(|u| json!({"href": u}));
    json!({
        "links": {
            "self": {"href": links.base()},
            "cloud_controller_v3": {
                "href": format!("{}/v3", links.base()),
                "meta": {"version": crate::API_VERSION},
            },
            "login": uaa,
            "uaa": uaa,
        }
    })
}

/// `GET /v3`: links to the resources this service serves.
pub fn v3_root(links: &Links) -> Value {
    json!({
        "links": {
            "self": links.href("/v3"),
            "apps": links.href("/v3/apps"),
            "organizations": links.href("/v3/organizations"),
            "packages": links.href("/v3/packages"),
            "resource_matches": links.href("/v3/resource_matches"),
            "roles": links.href("/v3/roles"),
            "spaces": links.href("/v3/spaces"),
        }
    })
}

#[cfg(test)]
mod tests {
    use packages_domain::{Metadata, Package, PackageState, Timestamp};

    use super::*;

    fn view(package: Package) -> PackageView {
        PackageView {
            package,
            metadata: Default::default(),
        }
    }

    fn bits(state: PackageState) -> Package {
        Package {
            guid: "guid-e036ecfe-35d3-482d-a6da-5276a9d4d01e".into(),
            app_guid: "guid-9976b72b-6a91-4bf3-a121-cfd7a1a13120".into(),
            package_type: PackageType::Bits,
            state,
            sha1: None,
            sha256: None,
            error: None,
            url: None,
            created_at: Timestamp(1_444_757_503),
            updated_at: Some(Timestamp(1_444_757_503)),
            docker_username: None,
            docker_password: None,
        }
    }

    #[test]
    fn a_compact_package_is_what_serde_writes() {
        let links = Links::new("https://api.example.org");
        let mut shapes = vec![
            bits(PackageState::AwaitingUpload),
            Package {
                sha1: Some("a".repeat(40)),
                sha256: Some("b".repeat(64)),
                ..bits(PackageState::Ready)
            },
            Package {
                error: Some("bad \"zip\"\n\\ \u{1} é ✓".into()),
                updated_at: None,
                ..bits(PackageState::Failed)
            },
        ];
        for username in [None, Some("user \"x\"".to_owned())] {
            shapes.push(Package {
                package_type: PackageType::Docker,
                url: Some("registry/image:latest".into()),
                docker_password: username.as_ref().map(|_| "secret".to_owned()),
                docker_username: username,
                ..bits(PackageState::Ready)
            });
        }
        let mut metadata = Metadata::default();
        metadata.labels.insert(
            MetadataKey::parse("example.org/tier").unwrap(),
            "web \"front\"".into(),
        );
        metadata
            .annotations
            .insert(MetadataKey::parse("note").unwrap(), "line\nbreak".into());
        let escaped_links = Links::new("https://api.example.org/\"odd\"");
        for (i, shape) in shapes.into_iter().enumerate() {
            for (links, metadata) in [
                (&links, Metadata::default()),
                (&links, metadata.clone()),
                (&escaped_links, Metadata::default()),
            ] {
                let view = PackageView {
                    package: shape.clone(),
                    metadata,
                };
                let body = package(links, &view);
                let mut compact = Vec::new();
                body.write_compact(&mut compact);
                assert_eq!(
                    String::from_utf8(compact).unwrap(),
                    serde_json::to_string(&body).unwrap(),
                    "shape {i}"
                );
            }
        }
    }

    #[test]
    fn package_superset_keeps_the_seed_keys_in_order() {
        let links = Links::new("https://api.example.org/");
        let v = serde_json::to_value(package(&links, &view(bits(PackageState::ProcessingUpload))))
            .unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "guid",
                "type",
                "data",
                "url",
                "state",
                "created_at",
                "updated_at",
                "relationships",
                "metadata",
                "links"
            ]
        );
        assert_eq!(v["data"]["hash"], json!({"type": "sha1", "value": null}));
        assert_eq!(
            v["data"]["checksum"],
            json!({"type": "sha256", "value": null})
        );
        assert_eq!(v["created_at"], "2015-10-13T17:31:43Z");
        let link_keys: Vec<&str> = v["links"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(link_keys, ["self", "upload", "download", "stage", "app"]);
        assert_eq!(
            v["links"]["upload"],
            json!({"href": "https://api.example.org/v3/packages/guid-e036ecfe-35d3-482d-a6da-5276a9d4d01e/upload", "method": "POST"})
        );
        assert_eq!(
            v["links"]["app"]["href"],
            "https://api.example.org/v3/apps/guid-9976b72b-6a91-4bf3-a121-cfd7a1a13120"
        );
    }

    #[test]
    fn docker_packages_have_the_same_keys_and_two_links() {
        let mut p = bits(PackageState::Ready);
        p.package_type = PackageType::Docker;
        p.url = Some("docker://cloudfoundry/runtime-ci".into());
        p.updated_at = None;
        let v = serde_json::to_value(package(&Links::new("http://h"), &view(p.clone()))).unwrap();
        assert_eq!(v["updated_at"], Value::Null);
        assert_eq!(v["url"], "docker://cloudfoundry/runtime-ci");
        let link_keys: Vec<&str> = v["links"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(link_keys, ["self", "app"]);
        assert_eq!(v["data"]["image"], "docker://cloudfoundry/runtime-ci");
        assert_eq!(v["data"]["username"], Value::Null);
        assert_eq!(v["data"]["password"], Value::Null);
        // A stored password is never shown, only that there is one (with a username).
        p.docker_username = Some("deployer".into());
        p.docker_password = Some("v1:sealed".into());
        let v = serde_json::to_value(package(&Links::new("http://h"), &view(p.clone()))).unwrap();
        assert_eq!(v["data"]["username"], "deployer");
        assert_eq!(v["data"]["password"], "***");
        assert!(!v.to_string().contains("sealed"));
        p.docker_username = None;
        let v = serde_json::to_value(package(&Links::new("http://h"), &view(p))).unwrap();
        assert_eq!(v["data"]["password"], Value::Null);
    }

    #[test]
    fn root_document() {
        let v = root(&Links::new("https://api.example.org"), None);
        assert_eq!(
            v["links"]["cloud_controller_v3"]["href"],
            "https://api.example.org/v3"
        );
        assert_eq!(v["links"]["uaa"], Value::Null);
        assert_eq!(v["links"]["self"]["href"], "https://api.example.org");
    }
}
