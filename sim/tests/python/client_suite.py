"""The official Python `kubernetes` client against podgrant-sim: one case per API-server behaviour.

Run by sim/tests/python_client.rs as `python client_suite.py KUBECONFIG SERVER_URL`; prints
`ok <case>` for each case that held and exits non-zero on the first that did not. Each case
names the upstream behaviour it checks.
"""

import json
import sys
import time
import urllib.error
import urllib.request

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
SERVER = sys.argv[2].rstrip("/")
NS = "py"
v1 = client.CoreV1Api()


def ok(case):
    print("ok", case, flush=True)


def expect_api_error(status, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == status, f"wanted {status}, got {e.status}: {e.body}"
        return e
    raise AssertionError(f"wanted ApiException {status}, the call succeeded")


def admin(method, path, body):
    req = urllib.request.Request(
        SERVER + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def pod(name, node=None):
    spec = {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


# -- list, watch from the list's resourceVersion, resume, 410 after compaction --------------
# API conventions "Efficient detection of changes": a watch from a list's RV sees every later change.
listed = v1.list_namespaced_pod(NS)
rv = listed.metadata.resource_version
assert sorted(p.metadata.name for p in listed.items) == ["bound-0", "bound-1"], listed.items
v1.create_namespaced_pod(NS, pod("after-list"))
w = watch.Watch()
seen = []
for ev in w.stream(v1.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=10):
    seen.append((ev["type"], ev["object"].metadata.name))
    w.stop()
assert seen == [("ADDED", "after-list")], seen
ok("watch_resumes_from_the_list_resource_version")

# resourceVersionMatch=Exact: the collection as it was at that RV (apiserver
# "Semantics for get and list"); NotOlderThan: at least as new.
exact = v1.list_namespaced_pod(NS, resource_version=rv, resource_version_match="Exact")
assert exact.metadata.resource_version == rv, exact.metadata
assert sorted(p.metadata.name for p in exact.items) == ["bound-0", "bound-1"], exact.items
newer = v1.list_namespaced_pod(NS, resource_version=rv, resource_version_match="NotOlderThan")
assert "after-list" in [p.metadata.name for p in newer.items]
ok("list_exact_and_not_older_than")

# A watch from a compacted RV: 200 and an in-stream 410 Expired (the watch cache's answer);
# the client raises it as an ApiException 410 (watch.py) — the signal to relist.
admin("POST", "/_sim/compact", {})
try:
    for ev in watch.Watch().stream(v1.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=10):
        if ev["type"] == "ERROR":
            assert ev["raw_object"]["code"] == 410, ev
            break
        raise AssertionError(f"an event from a compacted RV: {ev['type']}")
except ApiException as e:
    assert e.status == 410, e
ok("watch_from_a_compacted_rv_is_410")

# -- dry run (API conventions "Dry-run"): answered like the write, nothing stored -----------
out = v1.create_namespaced_pod(NS, pod("dry"), dry_run="All")
assert out.metadata.name == "dry" and out.spec.dns_policy == "ClusterFirst", out
expect_api_error(404, v1.read_namespaced_pod, "dry", NS)
ok("dry_run_create_stores_nothing")

# -- defaulting (pkg/apis/core/v1/defaults.go) -----------------------------------------------
got = v1.read_namespaced_pod("after-list", NS)
c = got.spec.containers[0]
assert (got.spec.restart_policy, got.spec.termination_grace_period_seconds) == ("Always", 30)
assert (c.image_pull_policy, c.termination_message_path) == ("IfNotPresent", "/dev/termination-log")
ok("pod_defaults")

# -- delete preconditions (registry/rest/delete.go BeforeDelete): 409, nothing deleted -------
body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid"))
e = expect_api_error(409, v1.delete_namespaced_pod, "bound-1", NS, body=body)
assert "precondition" in json.loads(e.body)["message"], e.body
assert v1.read_namespaced_pod("bound-1", NS).metadata.deletion_timestamp is None
ok("delete_precondition_uid_mismatch_is_409")

# -- graceful deletion (pod strategy CheckGracefulDelete): a bound pod stays, Terminating ----
v1.delete_namespaced_pod("bound-0", NS, grace_period_seconds=30)
going = v1.read_namespaced_pod("bound-0", NS)
assert going.metadata.deletion_timestamp is not None, going.metadata
assert going.metadata.deletion_grace_period_seconds == 30, going.metadata
ok("graceful_delete_keeps_a_bound_pod_terminating")
v1.delete_namespaced_pod("bound-0", NS, grace_period_seconds=0)
expect_api_error(404, v1.read_namespaced_pod, "bound-0", NS)
ok("grace_zero_removes_at_once")

# -- finalizers (API conventions "Finalizers"): deletion waits until they are removed ---------
secret = {"apiVersion": "v1", "kind": "Secret",
          "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
          "stringData": {"k": "v"}}
v1.create_namespaced_secret(NS, secret)
v1.delete_namespaced_secret("held", NS)
held = v1.read_namespaced_secret("held", NS)
assert held.metadata.deletion_timestamp is not None and held.metadata.finalizers == ["example.com/hold"]
v1.patch_namespaced_secret("held", NS, [{"op": "remove", "path": "/metadata/finalizers"}])
expect_api_error(404, v1.read_namespaced_secret, "held", NS)
ok("finalizer_holds_deletion_until_removed")

# -- throttling (apiserver filters/priority-and-fairness.go → maxinflight.go tooManyRequests):
# a plain-text 429 with Retry-After. On the wire:
admin("PUT", "/_sim/faults", {"seed": 1, "rules": [
    {"resource": "secrets", "verb": "list", "times": 1,
     "fault": {"kind": "http_error", "code": 429, "retry_after_seconds": 2}}]})
try:
    urllib.request.urlopen(SERVER + "/api/v1/namespaces/py/secrets", timeout=10)
    raise AssertionError("the throttled list was answered")
except urllib.error.HTTPError as e:
    assert e.code == 429, e.code
    assert e.headers["Retry-After"] == "2", dict(e.headers)
    assert e.headers["Content-Type"].startswith("text/plain"), dict(e.headers)
    assert e.read() == b"Too many requests, please try again later.\n"
ok("throttled_429_reads_as_priority_and_fairness")

# ...and the client (urllib3's Retry honours Retry-After on an idempotent 429) waits the
# 2 s the server asked for, retries, and the caller sees the answer, not the 429.
admin("PUT", "/_sim/faults", {"seed": 1, "rules": [
    {"resource": "secrets", "verb": "list", "times": 1,
     "fault": {"kind": "http_error", "code": 429, "retry_after_seconds": 2}}]})
started = time.monotonic()
v1.list_namespaced_secret(NS)
waited = time.monotonic() - started
assert waited >= 1.9, f"the client retried after {waited:.2f}s, before Retry-After"
with urllib.request.urlopen(SERVER + "/_sim/stats", timeout=10) as r:
    stats = json.load(r)
assert stats["faults"]["http_429"] == 2, stats["faults"]
ok("the_client_waits_retry_after_and_retries")

# -- server-side apply (KEP-555, apiserver fieldmanager): create, conflict, force -----------
cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "one"}}
made = v1.patch_namespaced_config_map("ssa", NS, cm, field_manager="py-a",
                                      _content_type="application/apply-patch+yaml")
assert made.data == {"k": "one"}, made.data
assert [m.manager for m in made.metadata.managed_fields] == ["py-a"], made.metadata.managed_fields
cm["data"]["k"] = "two"
e = expect_api_error(409, v1.patch_namespaced_config_map, "ssa", NS, cm, field_manager="py-b",
                     _content_type="application/apply-patch+yaml")
assert "conflict with \"py-a\"" in json.loads(e.body)["message"], e.body
forced = v1.patch_namespaced_config_map("ssa", NS, cm, field_manager="py-b", force=True,
                                        _content_type="application/apply-patch+yaml")
assert forced.data == {"k": "two"}, forced.data
ok("server_side_apply_conflicts_unless_forced")
