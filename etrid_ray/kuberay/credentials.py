"""The provider's key as the `etrid-provider-credentials` Secret (`etrid-ray keys k8s-secret`).

It fills the template `render.secret_template` writes (same name, namespace and labels), so it lives here,
beside that template: the KubeRay render sits above `security` (it reads the keys' names and the TEE
start command), and `security` never imports the render.
"""

from __future__ import annotations

import base64
from typing import Any

from etrid_ray.kuberay.render import dump_yaml, secret_template
from etrid_ray.security.keys import ADDRESS_KEY, SEED_KEY, KeyInfo, Secret


def k8s_secret(secret: Secret, info: KeyInfo, *, name: str | None = None, namespace: str | None = None
               ) -> dict[str, Any]:
    """The ``etrid-provider-credentials`` Secret (``data``, base64) with the phrase and the public address.

    Same name, namespace and labels as the template ``etrid-ray render`` writes, so the head's (0400, head only)
    seed volume finds it; the cloud keys of the template stay optional and are left out."""
    doc = secret_template()
    doc.pop("stringData", None)
    if name:
        doc["metadata"]["name"] = name
    if namespace:
        doc["metadata"]["namespace"] = namespace
    doc["data"] = {SEED_KEY: base64.b64encode(secret.reveal().encode()).decode(),
                   ADDRESS_KEY: base64.b64encode(info.address.encode()).decode()}
    return doc


def k8s_secret_yaml(secret: Secret, info: KeyInfo, *, name: str | None = None, namespace: str | None = None) -> str:
    header = (f"# The provider's signing key for {info.address} (sr25519). Apply it with\n"
              "#   kubectl apply -f FILE\n"
              "# then delete this file or keep it only where secrets belong: it holds the secret phrase.\n")
    return header + dump_yaml(k8s_secret(secret, info, name=name, namespace=namespace))
