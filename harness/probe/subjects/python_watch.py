"""Probe subject: the Python `kubernetes` client's list+watch loop, written the way a typical user writes it.

List pods, then watch from the list's resourceVersion with `watch.Watch().stream`, resuming from
the last seen resourceVersion when the stream ends, relisting on 410 Gone, and sleeping a second
after any other error. Reads KUBECONFIG.
"""

import sys
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def main() -> None:
    config.load_kube_config()
    v1 = client.CoreV1Api()
    rv = None
    while True:
        try:
            if rv is None:
                pods = v1.list_pod_for_all_namespaces()
                rv = pods.metadata.resource_version
            w = watch.Watch()
            for event in w.stream(
                v1.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=300
            ):
                obj = event["object"]
                if event["type"] == "ERROR":
                    # An in-stream 410: the resourceVersion is too old; relist.
                    rv = None
                    break
                rv = obj.metadata.resource_version
        except ApiException as e:
            if e.status == 410:
                rv = None
            else:
                print(f"watch error: {e.status} {e.reason}", file=sys.stderr, flush=True)
                time.sleep(1)
        except Exception as e:  # connection resets, timeouts, decode errors
            print(f"watch error: {e!r}", file=sys.stderr, flush=True)
            time.sleep(1)


if __name__ == "__main__":
    main()
