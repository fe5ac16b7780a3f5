"""The KubeRay manifests users deploy: rendered from the config, valid against the KubeRay CRDs and
Kubernetes' own schemas, turned by Ray's own KubeRay translation into one autoscaler node type per pool,
and never carrying a secret. The committed files under cluster/ are the default config's rendering."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from etrid_ray.chain.errors import ConfigError
from etrid_ray.cli import main as cli_main
from etrid_ray.config import ProviderConfig, load_config, pools_from_config
from etrid_ray.kuberay import prestop
from etrid_ray.kuberay import render as r
from etrid_ray.pools import Pool, pool_selector
from etrid_ray.prices import default_catalog

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = ROOT / "cluster"
CRD_DIR = ROOT.parent / "shared" / "kuberay"
K8S_VERSION = "1.33"


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused: the API server would silently prune them (a typo in
    `idleTimeoutSeconds` would just vanish), so the test treats them as errors instead."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_validator(filename: str) -> jsonschema.protocols.Validator:
    if not (CRD_DIR / filename).exists():
        pytest.skip(f"no ../shared/kuberay/{filename} in this checkout")
    crd = yaml.safe_load((CRD_DIR / filename).read_text())
    served = [v for v in crd["spec"]["versions"] if v["name"] == "v1" and v.get("served")]
    assert served, f"{filename}: no served v1 version"
    schema = _strict(served[0]["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def raycluster_schema() -> jsonschema.protocols.Validator:
    return _crd_validator("ray.io_rayclusters.yaml")  # 17,000 lines: loaded once per module


@pytest.fixture(scope="module")
def rayjob_schema() -> jsonschema.protocols.Validator:
    return _crd_validator("ray.io_rayjobs.yaml")


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _committed(name: str) -> list[dict[str, Any]]:
    return _docs((CLUSTER_DIR / name).read_text())


def _errors(validator: jsonschema.protocols.Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def _derive(cr: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    return _derive_autoscaling_config_from_ray_cr(copy.deepcopy(cr))


TEE_CONFIG = ProviderConfig(ENABLE_TEE=True, local_nodes=3, gcp_enabled=False, idle_timeout_s=120,
                            pools=[Pool(name="lambda-h100", kind="aws", accelerator="H100", gpus_per_node=8,
                                        region="eu-west-1", instance_type="p5.48xlarge", min_nodes=1, max_nodes=2,
                                        max_spot_price=60.0)])


# ------------------------------------------------------------------------------------------- drift, CLI


def test_committed_files_are_the_default_rendering() -> None:
    rendered = r.render_all(ProviderConfig())
    assert set(rendered) == {"namespace.yaml", "configmap.yaml", "secret.template.yaml", "state.yaml",
                             "raycluster.yaml", "rayjob.yaml", "networkpolicy.yaml", "ray-grafana-dashboards.yaml"}
    for name, text in rendered.items():
        path = CLUSTER_DIR / name
        assert path.exists(), f"cluster/{name} missing: run `etrid-ray render --out cluster`"
        assert path.read_text() == text, f"cluster/{name} drifted from the config: run `etrid-ray render --out cluster`"


def test_render_is_deterministic() -> None:
    first = r.render_all(ProviderConfig())
    assert r.render_all(ProviderConfig()) == first
    assert r.render_all(TEE_CONFIG) == r.render_all(TEE_CONFIG.model_copy(deep=True))


def test_cli_render_writes_the_files_for_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    cfg = tmp_path / "provider.yaml"
    cfg.write_text(yaml.safe_dump({"local_nodes": 2, "aws_region": "eu-west-1", "idle_timeout_s": 600}))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli_main, ["render", "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = r.render_all(load_config(cfg, env={}))
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, text in expected.items():
        assert (out / name).read_text() == text
    cluster = yaml.safe_load((out / "raycluster.yaml").read_text())
    assert cluster["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] == 600
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert groups["local-gpu"]["minReplicas"] == 2
    assert groups["aws-spot-a100"]["labels"]["etrid.ai/region"] == "eu-west-1"  # the file, not the env


def test_cli_render_without_config_writes_the_committed_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_main, ["render", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in r.render_all(ProviderConfig()):
        assert (tmp_path / name).read_text() == (CLUSTER_DIR / name).read_text()


def test_cli_render_reports_a_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("local_nodes: -1\n")
    result = CliRunner().invoke(cli_main, ["render", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "local_nodes" in result.output
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("config", [ProviderConfig(), TEE_CONFIG], ids=["default", "tee+extra-pool"])
def test_raycluster_is_valid_against_the_kuberay_crd(config: ProviderConfig, raycluster_schema: Any) -> None:
    doc = r.raycluster(config)
    assert _errors(raycluster_schema, doc) == []
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    assert doc["metadata"]["name"] == "etrid-provider" and doc["metadata"]["namespace"] == "etrid-ai-compute"


def test_operator_features_upgrade_strategy_and_optional_gcs_fault_tolerance(raycluster_schema: Any) -> None:
    """Recreate by default and no GCS fault tolerance; an external Redis (with its password a key of the
    credentials Secret) turns it on; every variant is valid against the CRD, a bad strategy is not."""
    spec = r.raycluster(ProviderConfig())["spec"]
    assert spec["upgradeStrategy"] == {"type": "Recreate"}
    assert "gcsFaultToleranceOptions" not in spec
    config = load_config(env={}, overrides={"upgrade_strategy": "None", "gcs_ft_redis_address": "redis.etrid.svc:6379",
                                            "gcs_ft_redis_password_key": "redis-password",
                                            "gcs_ft_storage_namespace": "etrid-provider"})
    doc = r.raycluster(config)
    assert _errors(raycluster_schema, doc) == []
    assert doc["spec"]["upgradeStrategy"] == {"type": "None"}
    assert doc["spec"]["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis.etrid.svc:6379", "externalStorageNamespace": "etrid-provider",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": r.SECRET_NAME, "key": "redis-password"}}}}
    bad = copy.deepcopy(doc)
    bad["spec"]["upgradeStrategy"]["type"] = "RollingUpdate"
    assert _errors(raycluster_schema, bad)
    with pytest.raises(ConfigError, match="gcs_ft_redis_address"):
        load_config(env={}, overrides={"gcs_ft_redis_address": "redis without a port"})


@pytest.mark.parametrize("config", [ProviderConfig(), TEE_CONFIG], ids=["default", "tee+extra-pool"])
def test_every_group_carries_its_pools_labels_in_rays_syntax(config: ProviderConfig) -> None:
    from ray._private.label_utils import validate_node_label_syntax, validate_node_labels

    for group, pool in zip(r.raycluster(config)["spec"]["workerGroupSpecs"],
                           [p for p, _, _ in r.pools_by_cost(config)], strict=True):
        assert group["labels"] == pool.labels()
        validate_node_label_syntax(group["labels"])  # what Ray's KubeRay translation checks
        validate_node_labels(group["labels"])  # what `ray start --labels` checks (no `ray.io/` keys)
        assert set(group["labels"]) >= {"etrid.ai/pool", "etrid.ai/cloud", "etrid.ai/market-type",
                                        "etrid.ai/accelerator", "etrid.ai/region"}


def test_committed_raycluster_and_rayjob_are_valid_against_the_crds(raycluster_schema: Any,
                                                                     rayjob_schema: Any) -> None:
    (cluster,) = _committed("raycluster.yaml")
    (job,) = _committed("rayjob.yaml")
    assert _errors(raycluster_schema, cluster) == []
    assert _errors(rayjob_schema, job) == []


def test_the_strict_crd_check_catches_typos_and_bad_values(raycluster_schema: Any) -> None:
    doc = r.raycluster(ProviderConfig())
    bad = copy.deepcopy(doc)
    bad["spec"]["autoscalerOptions"]["idleTimeoutSecond"] = 300
    assert any("idleTimeoutSecond" in e for e in _errors(raycluster_schema, bad))
    bad = copy.deepcopy(doc)
    bad["spec"]["autoscalerOptions"]["upscalingMode"] = "Fast"
    assert _errors(raycluster_schema, bad)
    bad = copy.deepcopy(doc)
    bad["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 4  # must be a string
    assert _errors(raycluster_schema, bad)
    bad = copy.deepcopy(doc)
    del bad["spec"]["workerGroupSpecs"][0]["maxReplicas"]
    assert _errors(raycluster_schema, bad)


@pytest.mark.parametrize("name", ["namespace.yaml", "configmap.yaml", "secret.template.yaml", "state.yaml",
                                  "networkpolicy.yaml"])
def test_core_objects_are_valid_kubernetes(name: str) -> None:
    docs = _committed(name)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "etrid-ai-compute"


def test_every_pod_template_is_a_valid_kubernetes_pod() -> None:
    (cluster,) = _committed("raycluster.yaml")
    spec = cluster["spec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        template = group["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **template["metadata"]},
               "spec": template["spec"]}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    bad = copy.deepcopy(pod)
    bad["spec"]["containers"][0]["resource"] = {}  # typo of `resources`
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


# ------------------------------------------------------------------------------------------- Ray's translation


@pytest.mark.parametrize("config", [ProviderConfig(), TEE_CONFIG], ids=["default", "tee+extra-pool"])
def test_rays_kuberay_translation_gives_one_node_type_per_pool(config: ProviderConfig) -> None:
    cr = _docs(r.render_all(config)["raycluster.yaml"])[0]
    auto = _derive(cr)
    pools = pools_from_config(config)
    types = auto["available_node_types"]
    assert set(types) == {"headgroup"} | {p.name for p in pools}
    assert auto["idle_timeout_minutes"] == pytest.approx(config.idle_timeout_s / 60)
    assert auto["upscaling_speed"] == 1000  # upscalingMode Default: no rate limit
    assert auto["max_workers"] == sum(t["max_workers"] for t in types.values())
    assert types["headgroup"]["resources"]["CPU"] == 0  # no job lands on the head
    for pool in pools:
        node = types[pool.name]
        expected = {k: int(v) for k, v in pool.resources().items()}
        for key, value in expected.items():
            assert node["resources"][key] == value, (pool.name, key)
        assert node["resources"]["GPU"] == pool.gpus_per_node
        assert not [k for k in node["resources"] if k.startswith("pool:")]  # no resource names a pool
        assert (f"tee:{pool.tee}" in node["resources"]) == bool(pool.tee)  # the attested TEE gate's
        # the group's labels become the node type's: what the head's selectors match
        assert node["labels"] == pool.labels()
        assert node["labels"]["etrid.ai/pool"] == pool.name
        assert node["labels"]["etrid.ai/market-type"] == ("owned" if pool.kind == "local" else "spot")
        assert node["labels"]["etrid.ai/accelerator"] == pool.accelerator
        assert node["labels"]["etrid.ai/region"] == pool.region
        assert node["labels"].get("etrid.ai/tee") == pool.tee
        assert node["resources"]["CPU"] >= 1 and node["resources"]["memory"] > 0
        assert node["max_workers"] == pool.max_nodes
        assert node["min_workers"] == (pool.max_nodes if pool.kind == "local" else pool.min_nodes)
        assert "priority" in node


def test_committed_raycluster_translates_to_the_default_pools() -> None:
    (cr,) = _committed("raycluster.yaml")
    types = _derive(cr)["available_node_types"]
    assert _derive(cr)["idle_timeout_minutes"] == 5.0  # the seed's 5 minutes
    assert types["local-gpu"]["min_workers"] == types["local-gpu"]["max_workers"] == 1
    assert types["local-gpu"]["resources"]["GPU"] == 4
    for cloud in ("aws-spot-a100", "gcp-spot-a100", "azure-spot-a100"):
        assert types[cloud]["min_workers"] == 0 and types[cloud]["max_workers"] == 4
        assert types[cloud]["resources"]["GPU"] == 8
    assert types["aws-spot-a100"]["labels"]["etrid.ai/region"] == "us-east-1"
    assert types["gcp-spot-a100"]["labels"]["etrid.ai/region"] == "europe-west4"
    assert types["gcp-spot-a100"]["labels"]["etrid.ai/cloud"] == "gcp"


def test_groups_are_ordered_and_prioritised_by_cost() -> None:
    cr = r.raycluster(TEE_CONFIG)
    groups = cr["spec"]["workerGroupSpecs"]
    costs = [float(g["template"]["metadata"]["annotations"]["etrid.ai/cost-usd-per-gpu-hour"]) for g in groups]
    priorities = [g["priority"] for g in groups]
    assert groups[0]["groupName"] == "local-gpu"  # local first
    assert costs[1:] == sorted(costs[1:])  # then cloud pools, cheapest first
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == len(priorities)
    # Ray's autoscaler v2 reads `priority` into the node type, higher first: the cheapest wins a tie
    types = _derive(cr)["available_node_types"]
    assert [types[g["groupName"]]["priority"] for g in groups] == priorities
    # the shipped catalog's quotes (what placement prices with) in the default regions, per GPU-hour:
    # AWS p4d $2.47/8 = $0.31 < Azure ND96amsr $3.60/8 = $0.45 < GCP a2-ultragpu-8g $21.09/8 = $2.64
    default = [g["groupName"] for g in r.raycluster(ProviderConfig())["spec"]["workerGroupSpecs"]]
    assert default == ["local-gpu", "aws-spot-a100", "azure-spot-a100", "gcp-spot-a100"]
    for pool in pools_from_config(ProviderConfig()):
        if pool.is_cloud:
            assert r.cost_per_gpu_hour(pool) == default_catalog().quote(pool).usd_per_gpu_hour


def test_cost_falls_back_to_the_max_spot_price_then_to_last() -> None:
    uncatalogued = Pool(name="x", kind="aws", instance_type="p9.mega", region="us-east-1", max_spot_price=16.0,
                        gpus_per_node=8)
    assert r.cost_per_gpu_hour(uncatalogued) == pytest.approx(2.0)
    unknown = uncatalogued.model_copy(update={"max_spot_price": None})
    assert r.cost_per_gpu_hour(unknown) == float("inf")
    cfg = ProviderConfig(gcp_enabled=False, azure_enabled=False, aws_enabled=False, pools=[unknown])
    (group,) = [g for g in r.raycluster(cfg)["spec"]["workerGroupSpecs"] if g["groupName"] == "x"]
    assert group["template"]["metadata"]["annotations"]["etrid.ai/cost-usd-per-gpu-hour"] == "unknown"


# ------------------------------------------------------------------------------------------- content


def _groups(config: ProviderConfig) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in r.raycluster(config)["spec"]["workerGroupSpecs"]}


def test_head_group() -> None:
    spec = r.raycluster(ProviderConfig())["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["rayVersion"] == "2.60.0"
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == 300
    assert spec["autoscalerOptions"]["upscalingMode"] == "Default"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"] == {"num-cpus": "0", "dashboard-host": "0.0.0.0", "metrics-export-port": "8080"}
    (container,) = head["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"gcs": 6379, "dashboard": 8265,
                                                                           "client": 10001, "metrics": 8080,
                                                                           "etrid-metrics": 9091}
    env = {e["name"]: e.get("value") for e in container["env"]}  # the head actor's metrics server, pod-wide
    assert env["ETRID_METRICS_HOST"] == "0.0.0.0" and env["ETRID_METRICS_PORT"] == "9091"
    assert container["image"] == "ghcr.io/etrid/etrid-ray:0.1.0"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/etrid" in mounts and "/dev/shm" in mounts


def test_worker_groups_for_each_cloud() -> None:
    groups = _groups(TEE_CONFIG)
    local = groups["local-gpu"]
    assert local["minReplicas"] == local["maxReplicas"] == local["replicas"] == 3  # the seed's advice
    assert local["template"]["spec"]["nodeSelector"] == {"etrid.ai/pool": "local-gpu"}

    aws = groups["aws-spot-a100"]["template"]["spec"]
    assert aws["nodeSelector"]["karpenter.sh/capacity-type"] == "spot"
    assert aws["nodeSelector"]["node.kubernetes.io/instance-type"] == "p4d.24xlarge"
    assert aws["nodeSelector"]["topology.kubernetes.io/region"] == "us-east-1"

    azure = groups["azure-spot-a100"]["template"]["spec"]
    assert azure["nodeSelector"]["kubernetes.azure.com/scalesetpriority"] == "spot"
    assert {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot",
            "effect": "NoSchedule"} in azure["tolerations"]

    tee = groups["azure-tee-h100"]
    assert json.loads(tee["rayStartParams"]["resources"][1:-1].replace("\\", ""))["tee:sev-snp"] == 1000
    assert tee["template"]["metadata"]["labels"]["etrid.ai/tee"] == "sev-snp"
    assert tee["maxReplicas"] == 2 and tee["rayStartParams"]["num-gpus"] == "1"

    extra = groups["lambda-h100"]
    assert extra["minReplicas"] == 1 and extra["maxReplicas"] == 2
    assert "gcp-spot-a100" not in groups

    gcp = _groups(ProviderConfig())["gcp-spot-a100"]["template"]["spec"]
    assert gcp["nodeSelector"]["cloud.google.com/gke-spot"] == "true"
    assert gcp["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-a100-80gb"
    assert {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
            "effect": "NoSchedule"} in gcp["tolerations"]

    for group in groups.values():
        spec = group["template"]["spec"]
        (container,) = spec["containers"]
        pool_gpus = group["rayStartParams"]["num-gpus"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == pool_gpus
        assert container["resources"]["requests"] == container["resources"]["limits"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert spec["terminationGracePeriodSeconds"] >= 120  # AWS's two-minute spot notice
        assert spec["restartPolicy"] == "Never"
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[:3] == ["python", "-m", "etrid_ray.kuberay.prestop"]
        deadline = float(command[command.index("--deadline-s") + 1])
        assert 0 < deadline < spec["terminationGracePeriodSeconds"]  # time left for Ray's own shutdown


def test_custom_resources_exclude_gpu_and_use_the_quoted_form_kuberay_passes_to_ray_start() -> None:
    for pool in pools_from_config(TEE_CONFIG):
        param = r.ray_resources_param(pool)
        if pool.tee is None:  # a pool is its labels: only the attested TEE resource is custom
            assert param is None and "resources" not in r.worker_start_params(pool)
            continue
        assert param is not None and param.startswith('"{') and param.endswith('}"')
        parsed = json.loads(param[1:-1].replace("\\", ""))
        assert parsed == {k: int(v) for k, v in pool.resources().items() if k != "GPU"}
        # what `ray start --resources="…"` receives after the shell strips the quotes
        assert json.loads(param[1:-1].replace('\\"', '"')) == parsed


def test_no_secret_is_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
    monkeypatch.setenv("ETRID_SEED", seed)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    files = r.render_all(load_config(None, env={}))
    for text in files.values():
        assert seed not in text and "wJalrXUtnFEMI" not in text
    credentials, token = _docs(files["secret.template.yaml"])
    for secret in (credentials, token):
        assert set(secret["stringData"].values()) == {"REPLACE_ME"}
    assert "ETRID_SEED" in credentials["stringData"] and set(token["stringData"]) == {"auth_token"}
    (cluster,) = _docs(files["raycluster.yaml"])
    # the seed: a file on the head (tests/test_manifest_security.py), in no container's environment
    for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
        for container in group["template"]["spec"]["containers"]:
            assert "ETRID_SEED" not in {e["name"] for e in container["env"]}
            for entry in container["env"]:
                if entry["name"] in r.SECRET_KEYS:  # every credential is a reference into the Secret, never a value
                    assert "value" not in entry and entry["valueFrom"]["secretKeyRef"]["name"] == r.SECRET_NAME
    for group in cluster["spec"]["workerGroupSpecs"]:
        env = group["template"]["spec"]["containers"][0]["env"]
        assert all("value" not in e or e["name"] in {"ETRID_POOL", "AWS_SHARED_CREDENTIALS_FILE"} for e in env)
    for configmap in _docs(files["configmap.yaml"]):
        assert not set(configmap["data"]) & set(r.SECRET_KEYS)
        provider = configmap["data"].get("provider.yaml", "")
        assert "seed" not in provider.replace("seed_env", "").replace(f"seed_file: {r.SEED_PATH}", "")


def test_configmaps_map_back_onto_the_same_config(tmp_path: Path) -> None:
    config = TEE_CONFIG
    env_map, file_map = _docs(r.render_all(config)["configmap.yaml"])
    assert env_map["metadata"]["name"] == "etrid-provider-config"
    assert file_map["metadata"]["name"] == "etrid-provider-file"
    assert set(env_map["data"]) == set(r.SEED_ENV_KEYS)
    assert all(isinstance(v, str) for v in env_map["data"].values())
    path = tmp_path / "provider.yaml"
    path.write_text(file_map["data"]["provider.yaml"])
    assert load_config(path, env={}) == r.in_cluster(config)  # the file alone is the whole config
    assert load_config(path, env=env_map["data"]) == r.in_cluster(config)  # and the env keys agree with it
    changed = load_config(path, env={**env_map["data"], "PRICE_PER_SECOND": "7"})
    assert changed.PRICE_PER_SECOND == 7  # an edited ConfigMap key wins over the file, as documented


def test_rayjob_runs_the_provider_on_the_rendered_cluster() -> None:
    (job,) = _committed("rayjob.yaml")
    (cluster,) = _committed("raycluster.yaml")
    spec = job["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert "rayClusterSpec" not in spec  # the RayCluster manifest stays the one source of the pools
    entry = spec["entrypoint"].split()
    assert entry[0] == "python" and entry[1].endswith("/jobs/provider.py")
    assert entry[1] == f"{r.APP_DIR}/jobs/provider.py"
    assert entry[2:] == ["--config", r.CONFIG_PATH]
    (_, file_map) = _committed("configmap.yaml")
    volumes = cluster["spec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    assert {"name": "provider-config", "configMap": {"name": file_map["metadata"]["name"], "items": [
        {"key": "provider.yaml", "path": "provider.yaml"}]}} in volumes
    assert job["metadata"]["namespace"] == cluster["metadata"]["namespace"]


def test_image_tag_is_the_package_version() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert r.project_image() == f"ghcr.io/etrid/etrid-ray:{pyproject['project']['version']}"


# ------------------------------------------------------------------------------------------- preStop drain


def _view(node_id: str, **kw: Any) -> prestop.NodeView:
    base = {"alive": True, "instance_id": "", "hostname": "h", "address": "10.0.0.1", "is_head": False,
            "draining": False}
    return prestop.NodeView(node_id, **{**base, **kw})


def test_find_local_node_rules() -> None:
    nodes = [_view("aa", instance_id="etrid-provider-head-x", is_head=True, address="10.0.0.2"),
             _view("bb", instance_id="etrid-provider-aws-spot-a100-worker-1", hostname="pod-b", address="10.0.0.3"),
             _view("cc", alive=False, instance_id="etrid-provider-aws-spot-a100-worker-2", hostname="pod-c"),
             _view("dd", instance_id="etrid-provider-local-gpu-worker-1", address="10.0.0.4")]
    find, Id = prestop.find_local_node, prestop.Identity
    assert find(nodes, Id(instance_ids=("etrid-provider-aws-spot-a100-worker-1",))).node_id == "bb"
    assert find(nodes, Id(instance_ids=("gone",), address="10.0.0.4")).node_id == "dd"  # instance id unset
    assert find(nodes, Id(instance_ids=("nope",), hostname="pod-b")).node_id == "bb"
    assert find(nodes, Id(node_id="BB")).node_id == "bb"
    with pytest.raises(LookupError, match="no live Ray node"):
        find(nodes, Id(instance_ids=("etrid-provider-aws-spot-a100-worker-2",)))  # dead: nothing to drain
    with pytest.raises(LookupError, match="pass --node-id"):
        find(nodes, Id(hostname="h"))  # two live nodes share the hostname: refuse to guess
    with pytest.raises(LookupError):
        find(nodes, Id(node_id="cc", hostname="pod-b"))  # an explicit id never falls back
    with pytest.raises(LookupError, match="nothing"):
        find(nodes, Id())


def test_pod_identity_uses_only_what_names_the_pod_uniquely() -> None:
    identity = prestop.pod_identity({"RAY_CLOUD_INSTANCE_ID": "p-1", "ETRID_POD_NAME": "p-1",
                                     "ETRID_POD_IP": "10.1.2.3"})
    assert identity == prestop.Identity(instance_ids=("p-1",), address="10.1.2.3")
    assert not prestop.pod_identity({})  # outside a pod: no hostname or local-IP guess (machines share those)
    assert prestop.pod_identity({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}).hostname  # a pod's hostname is its name
    # the manifest gives every worker the pod name and IP the hook matches on
    (cluster,) = _committed("raycluster.yaml")
    for group in cluster["spec"]["workerGroupSpecs"]:
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["ETRID_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["ETRID_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_prestop_without_an_identity_touches_no_cluster(tmp_path: Path) -> None:
    hidden = {"RAY_CLOUD_INSTANCE_ID", "ETRID_POD_NAME", "ETRID_POD_IP", "KUBERNETES_SERVICE_HOST", "RAY_ADDRESS"}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    proc = subprocess.run([sys.executable, "-m", "etrid_ray.kuberay.prestop", "--deadline-s", "5"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing identifies this pod's Ray node" in proc.stdout and "nothing drained" in proc.stdout


def test_prestop_drains_its_own_node_and_lets_running_work_finish() -> None:
    """A real two-node Ray cluster: the worker (RAY_CLOUD_INSTANCE_ID set as KubeRay does) runs a task;
    the hook drains that node, no new task lands there, the running task finishes, the node stops, and
    the head node is untouched."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # a module before this one left its driver connected
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=2, labels=pool_selector("spot"),
                         env_vars={"RAY_CLOUD_INSTANCE_ID": "etrid-provider-spot-worker-0"})
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()

        @ray.remote(num_cpus=1, label_selector=pool_selector("spot"), max_retries=0)
        def work(seconds: float) -> str:
            time.sleep(seconds)
            return ray.get_runtime_context().get_node_id()

        worker_id = ray.get(work.remote(0))
        running = work.remote(4)
        time.sleep(1.5)
        env = {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_CLOUD_INSTANCE_ID": "etrid-provider-spot-worker-0"}
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "etrid_ray.kuberay.prestop", "--deadline-s", "60",
                               "--reason", "test eviction", "--poll-s", "0.2"],
                              env=env, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"draining Ray node {worker_id}" in proc.stdout
        assert "drained and stopped" in proc.stdout
        assert took < 30  # returned when the node emptied, long before the 60 s deadline
        assert ray.get(running, timeout=30) == worker_id  # the running task finished where it was
        alive = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
        assert alive[worker_id] is False
        assert sum(alive.values()) == 1  # the head is still up
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_the_head_journal_lives_on_a_volume_that_outlives_the_head_pod() -> None:
    """The journal (claimed jobs not yet settled) is what a restarted head recovers from: it must not sit in
    the pod's home directory. The head mounts the state claim where provider.yaml puts the journal."""
    (claim,) = _committed("state.yaml")
    assert claim["kind"] == "PersistentVolumeClaim" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    head = _docs((CLUSTER_DIR / "raycluster.yaml").read_text())[0]["spec"]["headGroupSpec"]["template"]["spec"]
    volume = next(v for v in head["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mount = next(m for m in head["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    _, file_map = _docs((CLUSTER_DIR / "configmap.yaml").read_text())
    journal = Path(yaml.safe_load(file_map["data"]["provider.yaml"])["provider"]["journal_path"])
    assert journal.parent == Path(mount["mountPath"])
    # a journal path the provider chose itself is kept
    custom = r.in_cluster(ProviderConfig(journal_path=Path("/data/j.sqlite")))
    assert custom.journal_path == Path("/data/j.sqlite")
