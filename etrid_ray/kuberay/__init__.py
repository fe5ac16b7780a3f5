"""KubeRay: the manifests users deploy (rendered from the one config) and the pod-side helpers they run."""

from etrid_ray.kuberay.render import raycluster, render_all

__all__ = ["raycluster", "render_all"]
