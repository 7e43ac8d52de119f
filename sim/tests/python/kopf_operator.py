"""A minimal kopf operator for sim/tests/kopf_operator.rs: on a pod's creation it logs, and
patches the pod's status (`status.message`, through the `status` subresource) — run as `kopf run --standalone -A kopf_operator.py`."""

import kopf


@kopf.on.create("v1", "pods")
def created(name, namespace, patch, logger, **_):
    # A Pod's status is typed: kube-apiserver (and the sim, sim/src/fields.rs) drops fields it
    # does not know, and kopf then logs "Merge-patching finished with inconsistencies". So the
    # handler writes a field PodStatus has, and returns no result (kopf would store it at
    # `status.created`, unknown to a Pod).
    logger.info(f"pod {namespace}/{name} created")
    patch.status["message"] = f"seen by kopf: {name}"
