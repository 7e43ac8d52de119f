//! A minimal OpenAPI v3 (`/openapi/v3`, `/openapi/v3/<gv>`): enough for kubectl to see server-side field validation and skip client-side schemas.

use serde_json::{json, Map, Value};

use crate::resource::Registry;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the discovery root listing one document per group/version.
pub fn root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for r in registry.all() {
        let p = gv_path(&r.group, &r.version);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=podgrant-sim-1")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1|apis/g/v>`, if served: PATCH operations tagged with the GVK and the `fieldValidation` parameter.
pub fn group_version(registry: &Registry, path: &str) -> Option<Value> {
    let (group, version) = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return None,
    };
    let mut paths = Map::new();
    let mut any = false;
    for r in registry.in_group_version(&group, &version) {
        any = true;
        let prefix = format!("/{}", gv_path(&r.group, &r.version));
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        ]);
        let op = |id: &str| {
            json!({
                "operationId": format!("{id}{}", r.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": id,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        paths.insert(item, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
    }
    any.then(|| {
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (podgrant-sim)", "version": "v1.32.0"},
            "paths": paths,
            "components": {"schemas": {}},
        })
    })
}
