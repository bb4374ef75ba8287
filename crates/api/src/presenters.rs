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
    links: PackageLinks,
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
struct PackageLinks {
    #[serde(rename = "self")]
    this: Href,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    download: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<Action>,
    app: Href,
}

#[derive(Serialize)]
struct Href {
    href: String,
}

#[derive(Serialize)]
struct Action {
    href: String,
    method: &'static str,
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

/// The pieces joined, without the formatting machinery `format!` runs (a list page
/// builds hundreds of links).
fn joined(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

pub fn package<'a>(links: &Links, view: &'a PackageView) -> PackageBody<'a> {
    let p = &view.package;
    let path = joined(&[&links.base, "/v3/packages/", p.guid.as_str()]);
    let action = |suffix: &str, method| Action {
        href: joined(&[&path, suffix]),
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
            this: Href { href: path.clone() },
            app: Href {
                href: joined(&[&links.base, "/v3/apps/", p.app_guid.as_str()]),
            },
        },
    }
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
    use packages_domain::{Package, PackageState, Timestamp};

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
