"""A minimal kopf operator for sim/tests/kopf_operator.rs: on a pod's creation it logs, and
patches the pod's status (kopf writes both the handler's result and `status.kopfSeen` through
the `status` subresource) — run as `kopf run --standalone -A kopf_operator.py`."""

import kopf


@kopf.on.create("v1", "pods")
def created(name, namespace, patch, logger, **_):
    logger.info(f"pod {namespace}/{name} created")
    patch.status["kopfSeen"] = "yes"
    return {"handled": name}
