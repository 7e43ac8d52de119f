//! The registry of served resources: the built-in kinds (core/v1, apps/v1, coordination.k8s.io/v1, events.k8s.io/v1, discovery.k8s.io/v1, apiextensions.k8s.io/v1) plus the custom resources CRDs add at run time; a new built-in kind is one entry here.

use std::sync::{Arc, LazyLock};

/// One served resource type (one group/version of it).
#[derive(Debug, PartialEq)]
pub struct ResourceInfo {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub group: String,
    pub version: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Discovery categories (`all`, …).
    pub categories: Vec<String>,
    /// Whether the resource has a `status` subresource.
    pub has_status: bool,
    /// Extra selectable fields beyond metadata.name / metadata.namespace.
    pub fields: &'static [&'static str],
    /// The store key: the group-qualified plural ([`ResourceInfo::qualified`]), shared by every
    /// version of a resource.
    pub id: Arc<str>,
    /// What a CustomResourceDefinition declared (schema, printer columns, scale), for custom resources.
    pub custom: Option<Arc<crate::crd::Custom>>,
}

/// A served resource, shared by the registry and the requests on it.
pub type Resource = Arc<ResourceInfo>;

impl ResourceInfo {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `PodList` etc.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The resource name used in error messages (`pods`, `leases.coordination.k8s.io`).
    pub fn qualified(&self) -> String {
        self.id.to_string()
    }

    /// The kind as the built-in rules match it (defaults, tables, MicroTime fields): empty for a
    /// custom resource, so a CRD whose kind is `Pod` gets none of the Pod's rules.
    pub fn builtin_kind(&self) -> &str {
        match self.custom {
            Some(_) => "",
            None if self.group == "events.k8s.io" => "events.k8s.io/Event",
            None => &self.kind,
        }
    }

    /// Whether `name` names this resource as kubectl and the Rust API accept it (plural,
    /// singular, kind, a short name, or the group-qualified plural).
    pub fn answers_to(&self, name: &str) -> bool {
        self.plural == name
            || self.singular == name
            || self.kind == name
            || &*self.id == name
            || self.short_names.iter().any(|s| s == name)
    }
}

/// The store key of `plural` in `group`.
pub fn id_of(group: &str, plural: &str) -> Arc<str> {
    if group.is_empty() {
        Arc::from(plural)
    } else {
        Arc::from(format!("{plural}.{group}"))
    }
}

const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Verbs advertised in discovery for every resource.
pub fn verbs() -> &'static [&'static str] {
    RW
}

/// A built-in resource (every one is served at `v1`).
struct BuiltIn {
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    group: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    has_status: bool,
    fields: &'static [&'static str],
}

/// Every built-in resource the simulator serves.
static BUILT_INS: &[BuiltIn] = &[
    BuiltIn {
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        group: "",
        namespaced: true,
        short_names: &["po"],
        has_status: true,
        fields: &[
            "status.phase",
            "status.podIP",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.nominatedNodeName",
        ],
    },
    BuiltIn {
        plural: "services",
        singular: "service",
        kind: "Service",
        group: "",
        namespaced: true,
        short_names: &["svc"],
        has_status: true,
        fields: &[],
    },
    BuiltIn {
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        group: "",
        namespaced: true,
        short_names: &[],
        has_status: false,
        fields: &["type"],
    },
    BuiltIn {
        plural: "events",
        singular: "event",
        kind: "Event",
        group: "",
        namespaced: true,
        short_names: &["ev"],
        has_status: false,
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "reason",
            "type",
        ],
    },
    BuiltIn {
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        group: "",
        namespaced: false,
        short_names: &["ns"],
        has_status: true,
        fields: &["status.phase"],
    },
    BuiltIn {
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        group: "",
        namespaced: true,
        short_names: &["cm"],
        has_status: false,
        fields: &[],
    },
    BuiltIn {
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        group: "",
        namespaced: true,
        short_names: &["sa"],
        has_status: false,
        fields: &[],
    },
    BuiltIn {
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        group: "",
        namespaced: true,
        short_names: &["ep"],
        has_status: false,
        fields: &[],
    },
    BuiltIn {
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        group: "",
        namespaced: true,
        short_names: &["pvc"],
        has_status: true,
        fields: &[],
    },
    BuiltIn {
        plural: "nodes",
        singular: "node",
        kind: "Node",
        group: "",
        namespaced: false,
        short_names: &["no"],
        has_status: true,
        fields: &["spec.unschedulable"],
    },
    BuiltIn {
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        group: "coordination.k8s.io",
        namespaced: true,
        short_names: &[],
        has_status: false,
        fields: &[],
    },
    BuiltIn {
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        group: "apps",
        namespaced: true,
        short_names: &["deploy"],
        has_status: true,
        fields: &[],
    },
    BuiltIn {
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        group: "apps",
        namespaced: true,
        short_names: &["rs"],
        has_status: true,
        fields: &["status.replicas"],
    },
    BuiltIn {
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        group: "apps",
        namespaced: true,
        short_names: &["sts"],
        has_status: true,
        fields: &[],
    },
    BuiltIn {
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        group: "apps",
        namespaced: true,
        short_names: &["ds"],
        has_status: true,
        fields: &[],
    },
    BuiltIn {
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        group: "discovery.k8s.io",
        namespaced: true,
        short_names: &[],
        has_status: false,
        fields: &[],
    },
    BuiltIn {
        plural: "events",
        singular: "event",
        kind: "Event",
        group: "events.k8s.io",
        namespaced: true,
        short_names: &["ev"],
        has_status: false,
        fields: &["reason", "type"],
    },
    BuiltIn {
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        group: "apiextensions.k8s.io",
        namespaced: false,
        short_names: &["crd", "crds"],
        has_status: true,
        fields: &[],
    },
];

/// The built-in resources, made once.
static BUILT_IN: LazyLock<Vec<Resource>> = LazyLock::new(|| {
    BUILT_INS
        .iter()
        .map(|b| {
            Arc::new(ResourceInfo {
                plural: b.plural.into(),
                singular: b.singular.into(),
                kind: b.kind.into(),
                group: b.group.into(),
                version: "v1".into(),
                namespaced: b.namespaced,
                short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
                categories: if matches!(b.plural, "pods" | "services") && b.group.is_empty() {
                    vec!["all".into()]
                } else {
                    Vec::new()
                },
                has_status: b.has_status,
                fields: b.fields,
                id: id_of(b.group, b.plural),
                custom: None,
            })
        })
        .collect()
});

/// The built-in resources, in registry order (core first).
pub fn built_ins() -> &'static [Resource] {
    &BUILT_IN
}

/// A built-in resource by its store key (`pods`, `deployments.apps`, `events.events.k8s.io`).
pub fn built_in(id: &str) -> Option<&'static Resource> {
    BUILT_IN.iter().find(|r| &*r.id == id)
}

/// A built-in resource by plural name, core group first (for tests and the built-in rules).
pub fn by_plural(plural: &str) -> Option<&'static Resource> {
    BUILT_IN.iter().find(|r| r.plural == plural)
}

/// The selectable fields of the resource stored under `id` (custom resources have none).
pub fn fields_of(id: &str) -> &'static [&'static str] {
    built_in(id).map_or(&[], |r| r.fields)
}

/// The served resources: the built-ins and the custom resources of established CRDs. Kept as
/// an immutable snapshot: a CRD's create or delete swaps in a new one (under the store lock),
/// requests route against the snapshot they read.
#[derive(Clone, Debug)]
pub struct Registry {
    entries: Vec<Resource>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            entries: BUILT_IN.clone(),
        }
    }
}

impl Registry {
    /// Every served resource version.
    pub fn all(&self) -> &[Resource] {
        &self.entries
    }

    /// A resource by group, version and plural name.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.entries
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resources of one group/version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Resource> + use<'a> {
        self.entries
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }

    /// The served API groups (not the core group) with their versions, preferred first, in
    /// the order they were added.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.entries {
            if r.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, vs)) => {
                    if !vs.contains(&r.version) {
                        vs.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    /// A resource by the name a client gives (see [`ResourceInfo::answers_to`]), built-ins first.
    pub fn resolve(&self, name: &str) -> Option<&Resource> {
        self.entries.iter().find(|r| r.answers_to(name))
    }

    /// The stored version of the resource under `id` (its first served version for a CRD, which
    /// keeps its storage version first).
    pub fn by_id(&self, id: &str) -> Option<&Resource> {
        self.entries.iter().find(|r| &*r.id == id)
    }

    /// The resource an ownerReference's `apiVersion` and `kind` name.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.entries
            .iter()
            .find(|r| r.kind == kind && r.group == group)
            .or_else(|| self.entries.iter().find(|r| r.kind == kind))
    }

    /// One version of each namespaced resource (the store keys a namespace's objects live under).
    pub fn namespaced(&self) -> Vec<Resource> {
        let mut out: Vec<Resource> = Vec::new();
        for r in self.entries.iter().filter(|r| r.namespaced) {
            if !out.iter().any(|o| o.id == r.id) {
                out.push(r.clone());
            }
        }
        out
    }

    /// Whether `info` is still served (a request that routed before its CRD went must not store).
    pub fn serves(&self, info: &Resource) -> bool {
        self.entries.iter().any(|r| Arc::ptr_eq(r, info))
    }

    /// This registry with `added` (the versions of one custom resource) in place of any
    /// entries with the same store key.
    pub fn with(&self, id: &str, added: Vec<Resource>) -> Self {
        let mut entries: Vec<Resource> = self
            .entries
            .iter()
            .filter(|r| &*r.id != id || r.custom.is_none())
            .cloned()
            .collect();
        entries.extend(added);
        Self { entries }
    }

    /// This registry without the custom resource stored under `id`.
    pub fn without(&self, id: &str) -> Self {
        self.with(id, Vec::new())
    }
}
