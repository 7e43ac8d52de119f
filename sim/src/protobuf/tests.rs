//! The codec's round trips, Go's wire habits, negotiation and hostile bytes.

use super::codec::{put_bytes, put_key, put_varint};
use super::*;
use serde_json::json;

fn info(plural: &str) -> &'static ResourceInfo {
    crate::resource::by_plural(plural).unwrap()
}

fn round_trip(plural: &str, v: &Value) -> Value {
    let bytes = encode_object(info(plural), v).unwrap().expect("a message");
    assert!(bytes.starts_with(MAGIC));
    decode_envelope(&bytes).unwrap()
}

/// A Pod touching every special mapping: Time, IntOrString (both forms), Quantity, inline
/// fields (a Probe's handler, a Volume's source, key selectors' LocalObjectReference), maps,
/// repeated messages and scalars, booleans, int64.
#[test]
fn a_pod_round_trips_json_to_protobuf_to_json() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-1", "namespace": "shop", "uid": "8d1c", "resourceVersion": "42",
            "creationTimestamp": "2024-05-06T07:08:09Z",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": "a \"quoted\" value"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                 "uid": "r1", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                               "time": "2024-05-06T07:08:09Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]
        },
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "c", "image": "nginx", "args": ["-g", "daemon off;"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "1"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                  "periodSeconds": 10},
                "readinessProbe": {"tcpSocket": {"port": 8080}},
                "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true}]
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}}]
        },
        "status": {
            "phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
            "startTime": "2024-05-06T07:08:10Z",
            "conditions": [{"type": "Ready", "status": "True",
                            "lastTransitionTime": "2024-05-06T07:08:11Z"}]
        }
    });
    assert_eq!(round_trip("pods", &pod), pod);
}

#[test]
fn secret_bytes_and_a_deployments_zero_replicas_round_trip() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "s"},
        "data": {"a": "Yg==", "bin": "AP8Q", "empty": ""}});
    assert_eq!(round_trip("secrets", &secret), secret);
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "generation": 3},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    assert_eq!(round_trip("deployments", &deploy), deploy);
}

#[test]
fn micro_time_keeps_microseconds_and_a_lease_round_trips() {
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l", "namespace": "kube-system"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": 0,
                 "renewTime": "2024-01-01T00:00:00.123456Z"}});
    assert_eq!(round_trip("leases", &lease), lease);
}

/// Go's generated marshaller writes every non-pointer field, zero or not, and a zero `Time`
/// as an empty message: what kubectl sends for `create namespace x`. Go's JSON would omit
/// those (`omitempty`, a nil time), and so does the decoder.
#[test]
fn go_zero_fields_read_as_absent() {
    let mut meta = Vec::new();
    put_bytes(&mut meta, 1, b"x"); // name
    put_bytes(&mut meta, 2, b""); // generateName
    put_bytes(&mut meta, 3, b""); // namespace
    put_bytes(&mut meta, 5, b""); // uid
    put_key(&mut meta, 7, 0); // generation
    put_varint(&mut meta, 0);
    put_bytes(&mut meta, 8, b""); // creationTimestamp: the zero Time
    let mut ns = Vec::new();
    put_bytes(&mut ns, 1, &meta);
    put_bytes(&mut ns, 2, b""); // spec {}
    put_bytes(&mut ns, 3, b""); // status {}
    let mut tm = Vec::new();
    put_bytes(&mut tm, 1, b"v1");
    put_bytes(&mut tm, 2, b"Namespace");
    let mut env = MAGIC.to_vec();
    put_bytes(&mut env, 1, &tm);
    put_bytes(&mut env, 2, &ns);
    put_bytes(&mut env, 3, b"");
    put_bytes(&mut env, 4, b"");
    let (v, json) = decode_body(info("namespaces"), MEDIA_TYPE, Bytes::from(env)).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"},
               "spec": {}, "status": {}})
    );
    assert_eq!(serde_json::from_slice::<Value>(&json).unwrap(), v);
}

#[test]
fn a_list_envelope_holds_each_items_message() {
    let pods: Vec<Arc<Obj>> = (0..3)
        .map(|i| {
            let v = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p{i}"), "namespace": "ns"},
                "spec": {"containers": [{"name": "c", "image": "i"}]}});
            Obj::encode("pods", "ADDED", &v).0
        })
        .collect();
    let meta = json!({"resourceVersion": "9", "continue": "abc", "remainingItemCount": 4});
    let bytes = list(info("pods"), &meta, &pods).unwrap();
    let v = decode_envelope(&bytes).unwrap();
    assert_eq!(v["kind"], "PodList");
    assert_eq!(v["metadata"], meta);
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p0", "p1", "p2"]);
    // The second time the items' messages come from their cache: the same bytes.
    assert_eq!(list(info("pods"), &meta, &pods).unwrap(), bytes);
}

#[test]
fn a_watch_line_becomes_a_length_prefixed_watch_event() {
    let line =
        br#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}}"#;
    let frame = watch_frame(info("pods"), line);
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4);
    let schema = Schema::get();
    let we = schema.for_kind("v1", "WatchEvent").unwrap();
    let ev = codec::decode(schema, we, &frame[4..], 0).unwrap();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(
        ev["object"],
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    );
}

#[test]
fn accept_headers_negotiate_like_the_apiserver() {
    for (accept, want) in [
        ("", Wire::Json),
        ("application/json", Wire::Json),
        ("*/*", Wire::Json),
        ("application/vnd.kubernetes.protobuf", Wire::Protobuf),
        ("application/vnd.kubernetes.protobuf, */*", Wire::Protobuf),
        (
            "application/vnd.kubernetes.protobuf,application/json",
            Wire::Protobuf,
        ),
        (
            "application/json, application/vnd.kubernetes.protobuf",
            Wire::Json,
        ),
        (
            "application/json;q=0.5, application/vnd.kubernetes.protobuf",
            Wire::Protobuf,
        ),
        (
            "application/vnd.kubernetes.protobuf;stream=watch",
            Wire::Protobuf,
        ),
        (
            "application/vnd.kubernetes.protobuf;q=0, application/json",
            Wire::Json,
        ),
        (
            "application/yaml, application/vnd.kubernetes.protobuf",
            Wire::Protobuf,
        ),
        (
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json",
            Wire::Json,
        ),
    ] {
        assert_eq!(Wire::negotiate(accept), want, "{accept}");
    }
}

#[test]
fn bodies_of_other_types_are_415_and_custom_kinds_take_no_protobuf() {
    let e = decode_body(info("pods"), "application/yaml", Bytes::new()).unwrap_err();
    assert_eq!(e.code(), 415);
    let (v, _) = decode_body(info("pods"), "", Bytes::from_static(b"{\"a\":1}")).unwrap();
    assert_eq!(v, json!({"a": 1}));
    assert!(crate::protobuf::Schema::get()
        .for_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        .is_none());
}

/// Every prefix of a valid body, every single-byte corruption of it and some crafted bytes
/// decode to a value or a 400 — never a panic, never a hang.
#[test]
fn malformed_bodies_are_400_never_a_panic() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "b"}, "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}});
    let good = encode_object(info("pods"), &pod).unwrap().unwrap();
    let pods = info("pods");
    for n in 0..good.len() {
        let r = decode_body(pods, MEDIA_TYPE, Bytes::copy_from_slice(&good[..n]));
        if let Err(e) = r {
            assert_eq!(e.code(), 400, "prefix {n}: {e}");
        }
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[n] ^= flip;
            if let Err(e) = decode_body(pods, MEDIA_TYPE, Bytes::from(bad)) {
                assert_eq!(e.code(), 400, "flip {n}: {e}");
            }
        }
    }
    // A length past the end, a group wire type, an 11-byte varint, a wrong magic.
    for raw in [
        &b"k8s\0\x0a\xff\xff\xff\x0f"[..],
        b"k8s\0\x0b",
        b"k8s\0\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"{\"kind\":\"Pod\"}",
        b"k8s\0",
    ] {
        let e = decode_body(pods, MEDIA_TYPE, Bytes::copy_from_slice(raw)).unwrap_err();
        assert_eq!(e.code(), 400, "{raw:?}");
    }
    // A kind that is not the endpoint's is a 400 naming both.
    let secret = encode_object(
        info("secrets"),
        &json!({"kind": "Secret", "apiVersion": "v1"}),
    )
    .unwrap()
    .unwrap();
    let e = decode_body(pods, MEDIA_TYPE, Bytes::from(secret)).unwrap_err();
    assert!(e.to_string().contains("Secret"), "{e}");
}

/// Envelopes nested in RawExtensions a thousand deep are an error, not a stack overflow.
#[test]
fn deeply_nested_raw_extensions_are_refused() {
    // A ControllerRevision's `data` is a RawExtension: nest revisions inside revisions.
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..1000 {
        let mut raw_ext = Vec::new();
        put_bytes(&mut raw_ext, 1, &inner);
        let mut rev = Vec::new();
        put_bytes(&mut rev, 2, &raw_ext); // data
        let mut tm = Vec::new();
        put_bytes(&mut tm, 1, b"apps/v1");
        put_bytes(&mut tm, 2, b"ControllerRevision");
        let mut env = MAGIC.to_vec();
        put_bytes(&mut env, 1, &tm);
        put_bytes(&mut env, 2, &rev);
        inner = env;
    }
    assert!(decode_envelope(&inner).is_err());
}

/// A stored object that does not fit its message (the Rust API stores without validating)
/// goes out as JSON rather than as a 500 or a half-encoded message.
#[test]
fn an_object_that_does_not_fit_its_message_goes_out_as_json() {
    let odd = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "eighty"}]}]}});
    assert!(matches!(
        encode_object(info("pods"), &odd),
        Err(CodecError::Field { .. })
    ));
    let resp = Wire::Protobuf.object(200, info("pods"), &odd);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let obj = Obj::encode("pods", "ADDED", &odd).0;
    assert!(list(info("pods"), &json!({}), &[obj]).is_none());
}
