//! Watch and list bodies decoded straight into facts: only the fields granting reads, no `k8s_openapi` objects.
//!
//! The engine's ingest cost is dominated by JSON decoding. A `k8s_openapi::api::core::v1::Pod`
//! is a deep tree of optional structs (every container, volume, env var and managed field is
//! allocated) that [`super::facts`] then throws away but for a dozen values; kube's
//! `ObjectList` also buffers a whole list through `#[serde(flatten)]`. The types here name only
//! what [`crate::model`] keeps (serde skips everything else without allocating), so a pod event
//! costs a fraction of a typed one. [`WireSource`] lists and watches with them over the same
//! kube `Client` (same auth, TLS and timeouts as `Api`). A watch body is framed here, not by
//! kube's `request_events` (which copies every chunk into a line buffer and every line into a
//! `String`): [`super::lines::LineSplitter`] splits the body's chunks in place and each line is
//! decoded from its bytes; [`WatchLines`] keeps kube's rules for what ends the stream.
//!
//! The typed reduction in [`super::facts`] stays as the reference: a test checks that both give
//! the same facts for the same objects.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use http_body::Body as _;
use http_body_util::BodyExt;
use kube::core::{Status, WatchEvent};
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::lines::{LineSplitter, MAX_LINE};
use super::source::{
    list_params, raw_event, watch_params, ListWatchSource, Page, RawEvent, RawStream, SourceError,
};
use crate::model::{ObjectRef, Password, PodFacts, SecretFacts, ServiceFacts};
use crate::validate::ANNOTATION_PREFIX;

/// An object type decoded from the wire: its resourceVersion, and its facts.
pub trait Wire: Clone + DeserializeOwned + Send + Sync + 'static {
    type Facts;
    fn resource_version(&self) -> &str;
    fn into_facts(self) -> Self::Facts;
}

/// The metadata granting reads, of any kind (one struct, no `flatten`: serde would buffer the
/// whole of `metadata`, managed fields included, to flatten it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    resource_version: String,
    /// All of them (selectors read any).
    #[serde(default, deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
    /// Only podgrant's (a `kubectl apply` annotation can be the size of the object).
    #[serde(default)]
    annotations: Prefixed,
    /// Present (any value): the object is being deleted.
    #[serde(default)]
    deletion_timestamp: Option<IgnoredAny>,
}

/// The entries of a string map whose key starts with [`ANNOTATION_PREFIX`]; others are skipped.
#[derive(Debug, Clone, Default)]
struct Prefixed(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Prefixed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Prefixed;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_unit<E>(self) -> Result<Prefixed, E> {
                Ok(Prefixed::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Prefixed, A::Error> {
                let mut kept = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key.starts_with(ANNOTATION_PREFIX) {
                        kept.insert(key, map.next_value::<String>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Prefixed(kept))
            }
        }
        d.deserialize_any(V)
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A pod as granting reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct PodWire {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Option<PodSpecWire>,
    #[serde(default)]
    status: Option<PodStatusWire>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecWire {
    #[serde(default)]
    host_network: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatusWire {
    /// Parsed from the JSON string in place; not an IP (or absent): `None`.
    #[serde(default, rename = "podIP", deserialize_with = "ip_or_none")]
    pod_ip: Option<IpAddr>,
    #[serde(default)]
    phase: Option<Phase>,
    #[serde(default, deserialize_with = "null_as_default")]
    conditions: Vec<ConditionWire>,
}

/// Only `Running` matters; other phases are compared, not allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Phase {
    Running,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
struct ConditionWire {
    #[serde(rename = "type")]
    type_: ConditionType,
    status: ConditionStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum ConditionType {
    Ready,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum ConditionStatus {
    True,
    #[serde(other)]
    Other,
}

/// An IP address from a JSON string without allocating it; anything else is `None`.
fn ip_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<IpAddr>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an IP address string")
        }
        fn visit_str<E>(self, v: &str) -> Result<Option<IpAddr>, E> {
            Ok(v.parse().ok())
        }
        fn visit_unit<E>(self) -> Result<Option<IpAddr>, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Option<IpAddr>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<IpAddr>, D::Error> {
            d.deserialize_str(V)
        }
    }
    d.deserialize_option(V)
}

impl Wire for PodWire {
    type Facts = PodFacts;
    fn resource_version(&self) -> &str {
        &self.metadata.resource_version
    }
    fn into_facts(self) -> PodFacts {
        let m = self.metadata;
        let status = self.status;
        let (ip, running, ready) = match &status {
            Some(s) => (
                s.pod_ip,
                s.phase == Some(Phase::Running),
                s.conditions
                    .iter()
                    .any(|c| c.type_ == ConditionType::Ready && c.status == ConditionStatus::True),
            ),
            None => (None, false, false),
        };
        PodFacts {
            id: ObjectRef::new(m.namespace, m.name),
            uid: m.uid,
            labels: m.labels,
            ip,
            running,
            ready,
            terminating: m.deletion_timestamp.is_some(),
            host_network: self.spec.and_then(|s| s.host_network).unwrap_or(false),
        }
    }
}

/// A Service as granting reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceWire {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Option<ServiceSpecWire>,
}

#[derive(Debug, Clone, Deserialize)]
struct ServiceSpecWire {
    #[serde(default)]
    selector: Option<BTreeMap<String, String>>,
}

impl Wire for ServiceWire {
    type Facts = ServiceFacts;
    fn resource_version(&self) -> &str {
        &self.metadata.resource_version
    }
    fn into_facts(self) -> ServiceFacts {
        let m = self.metadata;
        ServiceFacts {
            id: ObjectRef::new(m.namespace, m.name),
            uid: m.uid,
            selector: self.spec.and_then(|s| s.selector),
            annotations: m.annotations.0,
        }
    }
}

/// A Secret as granting reads it: its data, base64-decoded.
#[derive(Debug, Clone, Deserialize)]
pub struct SecretWire {
    #[serde(default)]
    metadata: Meta,
    #[serde(default, deserialize_with = "null_as_default")]
    data: BTreeMap<String, k8s_openapi::ByteString>,
}

impl Wire for SecretWire {
    type Facts = SecretFacts;
    fn resource_version(&self) -> &str {
        &self.metadata.resource_version
    }
    /// Values that are not UTF-8 are left out (MySQL passwords are text).
    fn into_facts(self) -> SecretFacts {
        let data = self
            .data
            .into_iter()
            .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|s| (k, Password::new(s))))
            .collect();
        SecretFacts {
            id: ObjectRef::new(self.metadata.namespace, self.metadata.name),
            data,
        }
    }
}

/// A list body: its version, continue token and items, without `ObjectList`'s flatten.
#[derive(Deserialize)]
#[serde(bound(deserialize = "W: Deserialize<'de>"))]
struct ListWire<W> {
    #[serde(default)]
    metadata: ListMetaWire,
    #[serde(default = "Vec::new", deserialize_with = "null_as_default")]
    items: Vec<W>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMetaWire {
    #[serde(default)]
    resource_version: String,
    #[serde(default, rename = "continue")]
    continue_: Option<String>,
}

/// A [`ListWatchSource`] that lists and watches one resource's URL and decodes into `W`.
pub struct WireSource<W> {
    client: kube::Client,
    /// The collection's path, e.g. `/api/v1/namespaces/apps/pods` (from `Api::resource_url`).
    url: String,
    label_selector: Option<String>,
    field_selector: Option<String>,
    _wire: PhantomData<fn() -> W>,
}

impl<W> WireSource<W> {
    pub fn new(
        client: kube::Client,
        url: impl Into<String>,
        label_selector: Option<String>,
    ) -> Self {
        Self {
            client,
            url: url.into(),
            label_selector,
            field_selector: None,
            _wire: PhantomData,
        }
    }

    /// Lists and watches only the objects matching `selector` (e.g. `metadata.name=db`).
    pub fn with_field_selector(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }
}

fn request_error(e: kube::core::request::Error) -> SourceError {
    SourceError::Transport(e.to_string())
}

impl<W: Wire> ListWatchSource for WireSource<W> {
    type Object = W;

    fn list(
        &self,
        limit: Option<u32>,
        continue_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<W>, SourceError>> {
        Box::pin(async move {
            let lp = list_params(
                self.label_selector.clone(),
                self.field_selector.clone(),
                limit,
                continue_token,
            );
            let req = kube::core::Request::new(&self.url)
                .list(&lp)
                .map_err(request_error)?;
            let list: ListWire<W> = self.client.request(req).await?;
            Ok(Page {
                items: list.items,
                resource_version: list.metadata.resource_version,
                continue_token: list.metadata.continue_.filter(|c| !c.is_empty()),
            })
        })
    }

    fn watch(
        &self,
        resource_version: String,
        timeout_secs: u32,
    ) -> BoxFuture<'_, Result<RawStream<W>, SourceError>> {
        Box::pin(async move {
            let wp = watch_params(
                self.label_selector.clone(),
                self.field_selector.clone(),
                timeout_secs,
            );
            let mut req = kube::core::Request::new(&self.url)
                .watch(&wp, &resource_version)
                .map_err(request_error)?;
            // As kube's `request_events`: a gzipped watch is decoded only to its first event.
            req.headers_mut()
                .entry(http::header::ACCEPT_ENCODING)
                .or_insert(http::HeaderValue::from_static("identity"));
            let res = self.client.send(req.map(kube::client::Body::from)).await?;
            let status = res.status();
            if status.is_client_error() || status.is_server_error() {
                return Err(api_error(status.as_u16(), res.into_body()).await);
            }
            Ok(WatchLines::<W>::new(res.into_body(), MAX_LINE).boxed())
        })
    }
}

/// A refused request's error, from its body: the API server's `Status`, or (a proxy's plain
/// text) a failure with the HTTP code — as kube's `Client` reads one.
async fn api_error(code: u16, body: kube::client::Body) -> SourceError {
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return SourceError::from(e),
    };
    let status = match serde_json::from_slice::<Status>(&bytes) {
        Ok(status) => status,
        Err(_) => Status::failure(
            String::from_utf8_lossy(&bytes).trim(),
            "Failed to parse error data",
        )
        .with_code(code),
    };
    SourceError::from(kube::Error::Api(status.boxed()))
}

/// Whether a body error is the connection ending mid-stream (a resumable end, not a failure):
/// an `UnexpectedEof` anywhere in its chain, or a chunk decoder's "unexpected EOF" — kube's rule.
fn is_unexpected_eof(e: &kube::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // A `source` chain that cycles must not stall a poll.
    for _ in 0..16 {
        let Some(err) = current else { break };
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        {
            return true;
        }
        current = err.source();
    }
    e.to_string().contains("unexpected EOF during chunk")
}

/// One watch line decoded, as kube's `request_events` decodes it: `None` for a line cut short
/// (an EOF error: dropped), an in-stream `Status` as an API error, else a decode error.
fn decode_line<W: Wire>(line: &[u8]) -> Option<Result<RawEvent<W>, SourceError>> {
    match serde_json::from_slice::<WatchEvent<W>>(line) {
        Ok(event) => Some(raw_event(Ok(event), |o: &W| {
            o.resource_version().to_string()
        })),
        Err(e) if e.is_eof() => None,
        Err(e) => Some(Err(match serde_json::from_slice::<Status>(line) {
            Ok(status) => SourceError::from(kube::Error::Api(status.boxed())),
            Err(_) => SourceError::from(kube::Error::SerdeError(e)),
        })),
    }
}

/// A watch response body as a stream of events: lines split in place ([`LineSplitter`]) and
/// decoded one by one. It ends when the body ends (its last line decoded even without a
/// newline) or breaks off mid-stream ([`is_unexpected_eof`]); any other body error, and a line
/// over the bound, is yielded once as an error, and the stream ends after it.
pub struct WatchLines<W> {
    body: kube::client::Body,
    lines: LineSplitter,
    ended: bool,
    _wire: PhantomData<fn() -> W>,
}

impl<W> WatchLines<W> {
    /// The events of `body`, whose lines are at most `max_line` bytes.
    pub fn new(body: kube::client::Body, max_line: usize) -> Self {
        Self {
            body,
            lines: LineSplitter::new(max_line),
            ended: false,
            _wire: PhantomData,
        }
    }
}

impl<W: Wire> Stream for WatchLines<W> {
    type Item = Result<RawEvent<W>, SourceError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match this.lines.next_line() {
                Ok(Some(line)) => match decode_line(line) {
                    Some(item) => return Poll::Ready(Some(item)),
                    None => continue,
                },
                Ok(None) => {}
                Err(e) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(SourceError::Transport(e.to_string()))));
                }
            }
            match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers carry no events.
                    if let Ok(data) = frame.into_data() {
                        this.lines.push(data);
                    }
                }
                Some(Err(e)) => {
                    this.ended = true;
                    if !is_unexpected_eof(&e) {
                        return Poll::Ready(Some(Err(SourceError::Transport(e.to_string()))));
                    }
                }
                None => {
                    this.ended = true;
                    match this.lines.finish() {
                        Ok(Some(line)) => return Poll::Ready(decode_line(line)),
                        Ok(None) => {}
                        Err(e) => {
                            return Poll::Ready(Some(Err(SourceError::Transport(e.to_string()))))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Pod, Secret, Service};
    use serde_json::json;

    use super::*;
    use crate::watch::{pod_facts, secret_facts, service_facts};

    fn wire<W: Wire>(v: &serde_json::Value) -> W {
        serde_json::from_value(v.clone()).expect("wire decode")
    }

    fn typed<K: DeserializeOwned>(v: &serde_json::Value) -> K {
        serde_json::from_value(v.clone()).expect("typed decode")
    }

    /// A pod with everything a real one carries, most of which granting ignores.
    fn busy_pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-1", "namespace": "apps", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "web", "pod-template-hash": "abc"},
                "annotations": {"podgrant.io/x": "kept?", "kubectl.kubernetes.io/last-applied-configuration": "{\"big\":1}"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "r", "controller": true}],
                "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]
            },
            "spec": {
                "hostNetwork": false,
                "containers": [{"name": "c", "image": "nginx", "env": [{"name": "A", "value": "1"}],
                                "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            },
            "status": {
                "phase": "Running", "podIP": "10.1.2.3", "podIPs": [{"ip": "10.1.2.3"}],
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
                ],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "nginx", "imageID": "", "state": {"running": {}}}]
            }
        })
    }

    #[test]
    fn pods_decode_to_the_same_facts_as_the_typed_path() {
        let mut cases = vec![busy_pod()];
        let mut v = busy_pod();
        v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        v["spec"]["hostNetwork"] = json!(true);
        cases.push(v);
        let mut v = busy_pod();
        v["status"]["conditions"][1]["status"] = json!("False");
        v["status"]["phase"] = json!("Pending");
        v["status"]["podIP"] = json!("not-an-ip");
        cases.push(v);
        let mut v = busy_pod();
        v["metadata"]["labels"] = json!(null);
        v["status"]["conditions"] = json!(null);
        cases.push(v);
        cases.push(json!({"metadata": {"name": "bare", "namespace": "apps"}}));
        cases.push(json!({"metadata": {"name": "v6", "namespace": "apps"},
                          "status": {"podIP": "fd00::7", "phase": "Running",
                                     "conditions": [{"type": "Ready", "status": "True"}]}}));
        for case in &cases {
            let w: PodWire = wire(case);
            assert_eq!(
                w.resource_version(),
                case["metadata"]["resourceVersion"].as_str().unwrap_or("")
            );
            assert_eq!(w.into_facts(), pod_facts(typed::<Pod>(case)), "{case}");
        }
    }

    #[test]
    fn services_keep_only_podgrants_annotations_like_the_typed_path() {
        let cases = [
            json!({"metadata": {"name": "s", "namespace": "apps", "uid": "u", "resourceVersion": "7",
                                "annotations": {"podgrant.io/mysql-user": "app", "other/x": "y",
                                                "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}],
                            "clusterIP": "10.96.0.1", "type": "ClusterIP"}}),
            json!({"metadata": {"name": "headless", "namespace": "apps", "annotations": null},
                   "spec": {"clusterIP": "None"}}),
            json!({"metadata": {"name": "nospec", "namespace": "apps"}}),
        ];
        for case in &cases {
            let w: ServiceWire = wire(case);
            assert_eq!(
                w.into_facts(),
                service_facts(typed::<Service>(case)),
                "{case}"
            );
        }
    }

    #[test]
    fn secrets_decode_base64_and_drop_non_text_values_like_the_typed_path() {
        let cases = [
            json!({"metadata": {"name": "db", "namespace": "apps", "resourceVersion": "3"},
                   "type": "Opaque", "data": {"password": "aHVudGVyMg==", "bin": "/w=="}}),
            json!({"metadata": {"name": "empty", "namespace": "apps"}, "data": null}),
            json!({"metadata": {"name": "none", "namespace": "apps"}}),
        ];
        for case in &cases {
            let w: SecretWire = wire(case);
            let (a, b) = (w.into_facts(), secret_facts(typed::<Secret>(case)));
            assert_eq!(a.id, b.id);
            let expose = |f: &SecretFacts| -> Vec<(String, String)> {
                f.data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect()
            };
            assert_eq!(expose(&a), expose(&b), "{case}");
        }
    }

    #[test]
    fn a_list_body_gives_its_version_token_and_items() {
        let body = json!({"kind": "PodList", "apiVersion": "v1",
                          "metadata": {"resourceVersion": "99", "continue": "next"},
                          "items": [busy_pod(), busy_pod()]});
        let list: ListWire<PodWire> = serde_json::from_value(body).unwrap();
        assert_eq!(list.metadata.resource_version, "99");
        assert_eq!(list.metadata.continue_.as_deref(), Some("next"));
        assert_eq!(list.items.len(), 2);
        let empty: ListWire<PodWire> =
            serde_json::from_value(json!({"metadata": {"resourceVersion": "1"}, "items": null}))
                .unwrap();
        assert!(empty.items.is_empty());
    }

    #[test]
    fn a_wrongly_typed_field_is_a_decode_error_not_a_default() {
        let mut v = busy_pod();
        v["metadata"]["labels"] = json!(["not", "a", "map"]);
        assert!(serde_json::from_value::<PodWire>(v).is_err());
    }
}
