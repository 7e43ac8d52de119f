//! URL path routing: discovery documents, resource collections/objects/subresources, and verbs.

use http::Method;

use crate::error::SimError;
use crate::resource::{Registry, Resource};

/// A routed request.
#[derive(Debug, PartialEq)]
pub enum Route {
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    ResourceList {
        group: String,
        version: String,
    },
    Resource(ResourceRequest),
}

/// A request on a resource.
#[derive(Debug, PartialEq)]
pub struct ResourceRequest {
    pub info: Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl ResourceRequest {
    /// The Kubernetes verb for a method on this path (`watch=true` turns list into watch).
    pub fn verb(&self, method: &Method, watch: bool) -> Result<&'static str, SimError> {
        let named = self.name.is_some();
        Ok(match (method.as_str(), named) {
            ("GET", true) => "get",
            ("GET", false) if watch => "watch",
            ("GET", false) => "list",
            ("POST", false) => "create",
            ("PUT", true) => "update",
            ("PATCH", true) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return Err(SimError::MethodNotAllowed),
        })
    }
}

fn not_found() -> SimError {
    SimError::UnknownResource("the server could not find the requested resource".into())
}

/// Percent-decode one path segment, as Go's `net/url` does before kube-apiserver routes.
/// A bad escape or a segment that is not UTF-8 is 400; one that decodes to something with a
/// `/` (which upstream would have split into more segments) or a NUL is 404.
pub fn decode_segment(seg: &str) -> Result<String, SimError> {
    if !seg.contains('%') {
        return Ok(seg.to_string());
    }
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(SimError::BadRequest(format!(
                    "invalid URL escape {:?} in the request path",
                    String::from_utf8_lossy(&b[i..b.len().min(i + 3)])
                )));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out)
        .map_err(|_| SimError::BadRequest("the request path is not valid UTF-8".into()))?;
    if s.contains('/') || s.contains('\0') {
        return Err(not_found());
    }
    Ok(s)
}

/// Route a path (each segment percent-decoded) against the resources `registry` serves.
pub fn route(path: &str, registry: &Registry) -> Result<Route, SimError> {
    let owned: Vec<String> = path
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect::<Result<_, _>>()?;
    let segs: Vec<&str> = owned.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => Ok(Route::Version),
        ["api"] => Ok(Route::CoreVersions),
        ["apis"] => Ok(Route::Groups),
        ["api", "v1"] => Ok(Route::ResourceList {
            group: String::new(),
            version: "v1".into(),
        }),
        ["api", "v1", rest @ ..] => resource_route(registry, "", "v1", rest),
        ["apis", g] if registry.groups().iter().any(|(name, _)| name == g) => {
            Ok(Route::Group(g.to_string()))
        }
        ["apis", g, v] if registry.in_group_version(g, v).next().is_some() => {
            Ok(Route::ResourceList {
                group: g.to_string(),
                version: v.to_string(),
            })
        }
        ["apis", g, v, rest @ ..] => resource_route(registry, g, v, rest),
        _ => Err(not_found()),
    }
}

fn resource_route(
    registry: &Registry,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Route, SimError> {
    let find = |plural: &str| {
        registry
            .lookup(group, version, plural)
            .cloned()
            .ok_or_else(not_found)
    };
    let req = |info: Resource, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourceRequest {
            info,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    let checked_sub = |info: &Resource, sub: &str| {
        if (sub == "status" && info.has_status) || (sub == "scale" && crate::scale::has_scale(info))
        {
            Ok(())
        } else {
            Err(not_found())
        }
    };
    let ns_info = registry.lookup("", "v1", "namespaces").cloned();
    match rest {
        [plural] => Ok(req(find(plural)?, None, None, None)),
        ["namespaces", name] if group.is_empty() => {
            Ok(req(ns_info.ok_or_else(not_found)?, None, Some(name), None))
        }
        ["namespaces", ns, plural] => {
            let info = find(plural)?;
            if !info.namespaced {
                return Err(not_found());
            }
            Ok(req(info, Some(ns), None, None))
        }
        ["namespaces", ns, plural, name] => {
            let info = find(plural)?;
            if !info.namespaced {
                return Err(not_found());
            }
            Ok(req(info, Some(ns), Some(name), None))
        }
        ["namespaces", ns, plural, name, sub] => {
            let info = find(plural)?;
            checked_sub(&info, sub)?;
            Ok(req(info, Some(ns), Some(name), Some(sub)))
        }
        [plural, name] => {
            let info = find(plural)?;
            if info.namespaced {
                return Err(not_found());
            }
            Ok(req(info, None, Some(name), None))
        }
        [plural, name, sub] => {
            let info = find(plural)?;
            if info.namespaced {
                return Err(not_found());
            }
            checked_sub(&info, sub)?;
            Ok(req(info, None, Some(name), Some(sub)))
        }
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Result<Route, SimError> {
        super::route(path, &Registry::default())
    }

    #[test]
    fn routes() {
        assert_eq!(route("/version").unwrap(), Route::Version);
        let Route::Resource(r) = route("/api/v1/namespaces/d/pods/p/status").unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                r.info.plural.as_str(),
                r.namespace.as_deref(),
                r.subresource.as_deref()
            ),
            ("pods", Some("d"), Some("status"))
        );
        let Route::Resource(r) = route("/api/v1/namespaces/d").unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.info.plural.as_str(), r.name.as_deref()),
            ("namespaces", Some("d"))
        );
        let Route::Resource(r) = route("/apis/coordination.k8s.io/v1/leases").unwrap() else {
            panic!()
        };
        assert_eq!(r.info.plural, "leases");
        // Keyed by group + plural: the two Event resources are two resources.
        for (path, id) in [
            ("/api/v1/namespaces/d/events", "events"),
            (
                "/apis/events.k8s.io/v1/namespaces/d/events",
                "events.events.k8s.io",
            ),
        ] {
            let Route::Resource(r) = route(path).unwrap() else {
                panic!()
            };
            assert_eq!(&*r.info.id, id);
        }
        assert_eq!(route("/api/v1/widgets").unwrap_err().code(), 404);
        let Route::Resource(r) = route("/api/v1/namespaces/a%2Db/pods/p%2e1").unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref()),
            (Some("a-b"), Some("p.1"))
        );
        assert_eq!(
            route("/api/v1/namespaces/a%2Fb/pods").unwrap_err().code(),
            404
        );
        assert_eq!(
            route("/api/v1/namespaces/a%00b/pods").unwrap_err().code(),
            404
        );
        assert_eq!(
            route("/api/v1/namespaces/a%zzb/pods").unwrap_err().code(),
            400
        );
        assert_eq!(
            route("/api/v1/namespaces/a%ff/pods").unwrap_err().code(),
            400
        );
        assert_eq!(
            route("/api/v1/namespaces/a%2/pods").unwrap_err().code(),
            400
        );
        assert_eq!(
            route("/api/v1/namespaces/d/secrets/s/status")
                .unwrap_err()
                .code(),
            404
        );
    }
}
