"""The rendered KubeRay manifests keep strangers and workers away from the provider's secrets: Ray token
auth on the RayCluster (and so on the RayJob's submitter), a NetworkPolicy around Ray's ports, the seed
phrase as a read-only file on the head alone, no secret in any container's environment; and the head points
the Ray dashboard's Metrics tab at Prometheus and Grafana, with Ray's own Grafana dashboards shipped next
to ours. One test starts Ray exactly as the rendered head starts it, with the env KubeRay's authOptions
injects, and shows the dashboard, the Jobs API and the GCS refusing anonymous requests."""

from __future__ import annotations

import copy
import http.server
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from etrid_ray.config import ProviderConfig, load_config
from etrid_ray.kuberay import render as r
from etrid_ray.processes import terminate
from tests.helpers.ray_head_process import free_port

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = ROOT / "cluster"
CRD_DIR = ROOT.parent / "shared" / "kuberay"
K8S_VERSION = "1.33"
SEED = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _committed(name: str) -> list[dict[str, Any]]:
    return _docs((CLUSTER_DIR / name).read_text())


def _cluster() -> dict[str, Any]:
    (cluster,) = _committed("raycluster.yaml")
    return cluster


def _head(cluster: dict[str, Any]) -> dict[str, Any]:
    return cluster["spec"]["headGroupSpec"]


def _pod_specs(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = cluster["spec"]
    return [("head", spec["headGroupSpec"]["template"]["spec"])] + [
        (g["groupName"], g["template"]["spec"]) for g in spec["workerGroupSpecs"]]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _crd_errors(filename: str, doc: dict[str, Any]) -> list[str]:
    if not (CRD_DIR / filename).exists():
        pytest.skip(f"no ../shared/kuberay/{filename} in this checkout")
    crd = yaml.safe_load((CRD_DIR / filename).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    validator = jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]


# ------------------------------------------------------------------------------------------- token auth


def test_the_raycluster_turns_on_ray_token_auth_from_a_secret() -> None:
    cluster = _cluster()
    auth = cluster["spec"]["authOptions"]
    assert auth == {"mode": "token", "secretName": "etrid-provider"}
    assert _crd_errors("ray.io_rayclusters.yaml", cluster) == []
    bad = copy.deepcopy(cluster)
    bad["spec"]["authOptions"]["mode"] = "password"  # the CRD knows only disabled and token
    assert _crd_errors("ray.io_rayclusters.yaml", bad)
    # Ray token auth needs Ray >= 2.52 (KubeRay refuses authOptions below it)
    assert tuple(int(p) for p in cluster["spec"]["rayVersion"].split(".")[:2]) >= (2, 52)
    # the template holds the token under the key KubeRay reads into RAY_AUTH_TOKEN
    secrets_by_name = {d["metadata"]["name"]: d for d in _committed("secret.template.yaml")}
    token_secret = secrets_by_name[auth["secretName"]]
    assert token_secret["metadata"]["namespace"] == cluster["metadata"]["namespace"]
    assert set(token_secret["stringData"]) == {"auth_token"}
    for doc in secrets_by_name.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_rayjob_runs_against_the_token_protected_cluster() -> None:
    """A RayJob that selects a cluster has no authOptions of its own: KubeRay gives the submitter the
    selected cluster's token. So the RayJob must select the RayCluster above, not build its own."""
    (job,) = _committed("rayjob.yaml")
    assert _crd_errors("ray.io_rayjobs.yaml", job) == []
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": _cluster()["metadata"]["name"]}
    assert "rayClusterSpec" not in job["spec"]


def test_no_container_asks_kuberay_to_leave_auth_off() -> None:
    """KubeRay does not overwrite a RAY_AUTH_MODE a container already has: one set to `disabled` in the
    manifest would switch auth off for that process."""
    for group, pod in _pod_specs(_cluster()):
        for container in _containers(pod):
            mode = _env(container).get("RAY_AUTH_MODE")
            assert mode is None or mode["value"] == "token", (group, container["name"])


def test_the_spot_watch_sidecar_reads_the_token_from_a_file() -> None:
    """KubeRay injects the token into the Ray container only; the sidecar that drains the node through the
    GCS gets it as a read-only file (RAY_AUTH_TOKEN_PATH), not as an env var."""
    sidecars = 0
    for _group, pod in _pod_specs(_cluster()):
        volumes = {v["name"]: v for v in pod["volumes"]}
        for sidecar in pod.get("initContainers", []):
            sidecars += 1
            env = _env(sidecar)
            assert env["RAY_AUTH_MODE"]["value"] == "token" and "RAY_AUTH_TOKEN" not in env
            (mount,) = [m for m in sidecar["volumeMounts"] if m["name"] == "ray-token"]
            assert mount["readOnly"] is True
            assert env["RAY_AUTH_TOKEN_PATH"]["value"] == f"{mount['mountPath']}/auth_token"
            secret = volumes["ray-token"]["secret"]
            assert secret["secretName"] == _cluster()["spec"]["authOptions"]["secretName"]
            assert secret["items"] == [{"key": "auth_token", "path": "auth_token"}]
            assert secret["defaultMode"] == 0o400
    assert sidecars == 3  # the three spot pools of the default config


# ------------------------------------------------------------------------------------------- the seed


def test_the_seed_is_a_read_only_file_on_the_head_only() -> None:
    cluster = _cluster()
    head = _head(cluster)["template"]["spec"]
    (volume,) = [v for v in head["volumes"] if v.get("secret", {}).get("items", [{}])[0].get("key") == "ETRID_SEED"]
    assert volume["secret"] == {"secretName": r.SECRET_NAME, "defaultMode": 0o400,
                                "items": [{"key": "ETRID_SEED", "path": "seed"}]}
    assert "optional" not in volume["secret"]  # no seed, no head: it fails at once, not at the first claim
    (ray_head,) = head["containers"]
    (mount,) = [m for m in ray_head["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    # provider.yaml names the mounted file, which is what the provider head actor reads
    _, file_map = _committed("configmap.yaml")
    provider = yaml.safe_load(file_map["data"]["provider.yaml"])
    assert provider["chain"]["seed_file"] == f"{mount['mountPath']}/seed" == r.SEED_PATH
    assert not Path(provider["chain"]["seed_file"]).is_relative_to(r.CONFIG_DIR)  # not inside the ConfigMap's volume
    # workers: no volume of the credentials Secret carries the seed
    for group, pod in _pod_specs(cluster)[1:]:
        for v in pod["volumes"]:
            items = v.get("secret", {}).get("items", [])
            assert "ETRID_SEED" not in {i["key"] for i in items}, group
            assert not (v.get("secret") and "items" not in v["secret"]), (group, v)  # never the whole Secret
        for container in _containers(pod):
            assert r.SECRETS_DIR not in {m["mountPath"] for m in container.get("volumeMounts", [])}, group


def test_a_config_seed_file_from_elsewhere_is_replaced_by_the_mounted_one(tmp_path: Path) -> None:
    config = ProviderConfig(seed_file=tmp_path / "my-laptop-seed.txt")
    assert r.in_cluster(config).seed_file == Path(r.SEED_PATH)
    _, file_map = _docs(r.render_all(config)["configmap.yaml"])
    assert yaml.safe_load(file_map["data"]["provider.yaml"])["chain"]["seed_file"] == r.SEED_PATH
    assert str(tmp_path) not in r.render_all(config)["configmap.yaml"]


def test_the_head_signs_with_the_mounted_seed_file(tmp_path: Path) -> None:
    """What the head actor does with provider.yaml: load_signer(env_var=seed_env, file=seed_file). With
    the file given it is the file that counts, even if some ETRID_SEED were around."""
    from etrid_ray.chain import load_signer

    _, file_map = _committed("configmap.yaml")
    provider = yaml.safe_load(file_map["data"]["provider.yaml"])
    seed = tmp_path / "seed"
    seed.write_text(SEED + "\n")  # `kubectl create secret --from-file` keeps the trailing newline
    seed.chmod(0o400)
    provider["chain"]["seed_file"] = str(seed)
    path = tmp_path / "provider.yaml"
    path.write_text(yaml.safe_dump(provider))
    config = load_config(path, env={})
    from_file = load_signer(env_var=config.seed_env, file=config.seed_file, environ={"ETRID_SEED": "//Alice"})
    assert from_file.source == f"file:{seed}"
    assert from_file.address == load_signer(environ={"ETRID_SEED": SEED}).address


def test_the_secret_keys_k8s_secret_writes_starts_the_head() -> None:
    """`etrid-ray keys k8s-secret` writes the credentials Secret: every required Secret volume of the head
    (the seed) finds its Secret and keys in it, so the head pod can start from that Secret alone."""
    from etrid_ray.kuberay.credentials import k8s_secret
    from etrid_ray.security.keys import generate

    doc = k8s_secret(*generate())
    head = r.head_group(ProviderConfig())["template"]["spec"]
    required = [v["secret"] for v in head["volumes"] if "secret" in v and not v["secret"].get("optional")]
    assert required
    for secret in required:
        assert secret["secretName"] == doc["metadata"]["name"]
        assert {i["key"] for i in secret["items"]} <= set(doc["data"])


def test_no_container_has_a_secret_in_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Env vars are inherited by every process of a container (for Ray: the dashboard, job drivers, agents,
    task workers) and readable in /proc/*/environ; secrets are files. The only Secret references left in
    env are identifiers (the Azure ids); ETRID_SEED is nowhere, not even as a reference."""
    monkeypatch.setenv("ETRID_SEED", SEED)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    files = r.render_all(load_config(None, env={}))
    for text in files.values():
        assert SEED not in text and "wJalrXUtnFEMI" not in text
    secret_like = {"ETRID_SEED", "SEED", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_CLIENT_SECRET",
                   "RAY_AUTH_TOKEN", "auth_token", *r.SECRET_FILE_KEYS}
    tee = ProviderConfig(ENABLE_TEE=True, gcp_enabled=True, azure_enabled=True)  # the TEE pool's worker command
    configs = [("default", files["raycluster.yaml"]), ("tee", r.render_all(tee)["raycluster.yaml"])]
    for label, text in configs:
        (cluster,) = _docs(text)
        for group, pod in _pod_specs(cluster):
            for container in _containers(pod):
                where = (label, group, container["name"])
                for entry in container.get("env", []):
                    assert entry["name"] not in secret_like, where
                    ref = entry.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] not in secret_like, where
                        assert ref["key"] in {*r.AZURE_ID_KEYS, "ETRID_PROVIDER_ADDRESS"}, where
                        assert ref.get("optional") is True, where
                for source in container.get("envFrom", []):
                    assert "secretRef" not in source, where  # a whole Secret as env would bring the seed back


def test_workers_get_only_the_s3_credentials_file() -> None:
    for group, pod in _pod_specs(_cluster())[1:]:
        (volume,) = [v for v in pod["volumes"] if v["name"] == "cloud-credentials"]
        assert volume["secret"]["items"] == [{"key": "aws-credentials", "path": "aws-credentials"}], group
        assert volume["secret"]["optional"] is True  # no key: boto3 falls back to IRSA or the instance profile
        (ray_worker,) = pod["containers"]
        env = _env(ray_worker)
        (mount,) = [m for m in ray_worker["volumeMounts"] if m["name"] == "cloud-credentials"]
        assert mount["readOnly"] is True
        assert env["AWS_SHARED_CREDENTIALS_FILE"]["value"] == f"{mount['mountPath']}/aws-credentials"


# ------------------------------------------------------------------------------------------- network


def test_the_network_policy_admits_only_the_cluster_the_namespace_and_monitoring() -> None:
    (policy,) = _committed("networkpolicy.yaml")
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    cluster = _cluster()
    assert policy["metadata"]["namespace"] == cluster["metadata"]["namespace"]
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"ray.io/cluster": cluster["metadata"]["name"]}}
    assert spec["policyTypes"] == ["Ingress"]
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    rules = spec["ingress"]
    # Ray's nodes reach each other on ports of their own (raylets, object managers, workers): any port
    assert {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": "etrid-provider"}}}]} in rules
    ports_for: dict[str, set[int]] = {}
    for rule in rules:
        assert rule.get("from"), "a rule without `from` would admit every source"
        for peer in rule["from"]:
            key = json.dumps(peer, sort_keys=True)
            ports_for.setdefault(key, set()).update(p["port"] for p in rule.get("ports", [{"port": -1}]))
            assert "ipBlock" not in peer
            assert peer.get("namespaceSelector", {"matchLabels": {"x": "y"}}) != {}, "every namespace"
    namespace_pods = json.dumps({"podSelector": {}}, sort_keys=True)
    assert ports_for[namespace_pods] == {6379, 8265, 10001}
    assert ports_for[json.dumps(monitoring, sort_keys=True)] == {6379, 8265, 10001, 8080, 9091}
    head_ports = {p["containerPort"] for p in _head(cluster)["template"]["spec"]["containers"][0]["ports"]}
    assert {6379, 8265, 10001, 8080, 9091} <= head_ports


def test_the_monitoring_namespace_label_is_configurable() -> None:
    config = ProviderConfig(monitoring_namespace_labels={"etrid.ai/monitoring": "true"})
    (policy,) = _docs(r.render_all(config)["networkpolicy.yaml"])
    selectors = [p["namespaceSelector"] for rule in policy["spec"]["ingress"] for p in rule["from"]
                 if "namespaceSelector" in p]
    assert selectors and all(s == {"matchLabels": {"etrid.ai/monitoring": "true"}} for s in selectors)


# ------------------------------------------------------------------------------------------- Metrics tab


def test_the_head_points_the_dashboards_metrics_tab_at_prometheus_and_grafana() -> None:
    (container,) = _head(_cluster())["template"]["spec"]["containers"]
    env = {k: v.get("value") for k, v in _env(container).items()}
    assert env["RAY_PROMETHEUS_HOST"] == "http://prometheus-operated.monitoring.svc:9090"
    assert env["RAY_GRAFANA_HOST"] == "http://grafana.monitoring.svc:3000"
    assert env["RAY_GRAFANA_IFRAME_HOST"] == "http://127.0.0.1:3000"
    assert env["RAY_PROMETHEUS_NAME"] == "Prometheus"
    custom = ProviderConfig(ray_grafana_host="http://kps-grafana.obs.svc:80", ray_grafana_iframe_host=None,
                            ray_prometheus_host="http://kps-prometheus.obs.svc:9090", ray_prometheus_name="Prom")
    (head,) = r.raycluster(custom)["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    env = {k: v.get("value") for k, v in _env(head).items()}
    assert env["RAY_GRAFANA_IFRAME_HOST"] == env["RAY_GRAFANA_HOST"] == "http://kps-grafana.obs.svc:80"
    assert env["RAY_PROMETHEUS_HOST"] == "http://kps-prometheus.obs.svc:9090" and env["RAY_PROMETHEUS_NAME"] == "Prom"
    for group, pod in _pod_specs(r.raycluster(custom))[1:]:
        assert "RAY_GRAFANA_HOST" not in _env(pod["containers"][0]), group  # only the head runs the dashboard


def test_rays_own_grafana_dashboards_are_the_installed_rays() -> None:
    """cluster/ray-grafana-dashboards.yaml is what the installed Ray's factory generates (a Ray upgrade
    that changes a panel fails here until `etrid-ray render` runs again), one ConfigMap per dashboard
    for Grafana's sidecar, keeping Ray's uids (the Metrics tab embeds dashboards by uid)."""
    from ray.dashboard.modules.metrics import grafana_dashboard_factory as factory

    docs = _committed("ray-grafana-dashboards.yaml")
    assert (CLUSTER_DIR / "ray-grafana-dashboards.yaml").read_text() == \
        r.render_all(ProviderConfig())["ray-grafana-dashboards.yaml"]
    by_uid = {}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "monitoring"
        assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert len(json.dumps(doc)) < 1024 * 1024  # a ConfigMap's limit
        ((key, text),) = doc["data"].items()
        board = json.loads(text)
        by_uid[board["uid"]] = board
        assert key.endswith(".json") and board["panels"]
    for name in ("default", "serve", "serve_deployment", "data", "train"):
        content, uid = getattr(factory, f"generate_{name}_grafana_dashboard")()
        assert by_uid[uid] == json.loads(content), name
    assert {"rayDefaultDashboard", "rayServeDashboard", "rayDataDashboard"} <= set(by_uid)


def test_dashboards_ignore_the_shells_uid_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_GRAFANA_DEFAULT_DASHBOARD_UID", "from-my-shell")
    boards = r.ray_grafana_dashboards()
    assert json.loads(boards["default"])["uid"] == "rayDefaultDashboard"
    assert os.environ["RAY_GRAFANA_DEFAULT_DASHBOARD_UID"] == "from-my-shell"  # and put it back


# ------------------------------------------------------------------------------------------- a real head


def kuberay_start_args(ray_start_params: dict[str, str]) -> list[str]:
    """`ray start --head` flags from rayStartParams the way KubeRay writes them: `--key=value`, and a bare
    `--key` for "true". KubeRay adds --block (the container's main process) and, with in-tree autoscaling,
    --no-monitor (its autoscaler container monitors instead)."""
    params = {**ray_start_params, "block": "true", "no-monitor": "true"}
    return [f"--{k}" if v.lower() == "true" else f"--{k}={v}" for k, v in params.items()]


def kuberay_auth_env(cluster: dict[str, Any], container: dict[str, Any], secrets_by_name: dict[str, dict[str, str]]
                     ) -> dict[str, str]:
    """What KubeRay's authOptions adds to the Ray container's env: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN
    from the `auth_token` key of the Secret `secretName` (default: the cluster's name), neither replacing
    a variable the container already sets; nothing when auth is off."""
    auth = cluster["spec"].get("authOptions") or {}
    if auth.get("mode") != "token":
        return {}
    own = _env(container)
    env = {"RAY_AUTH_MODE": own["RAY_AUTH_MODE"]["value"] if "RAY_AUTH_MODE" in own else "token"}
    if "RAY_AUTH_TOKEN" not in own:
        env["RAY_AUTH_TOKEN"] = secrets_by_name[auth.get("secretName") or cluster["metadata"]["name"]]["auth_token"]
    return env


class _FakeGrafana(http.server.BaseHTTPRequestHandler):
    """Grafana's /api/health, on loopback: the head's health check of RAY_GRAFANA_HOST lands here."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append(self.path)
        body = json.dumps({"database": "ok", "version": "11.0.0"}).encode()
        self.send_response(200 if self.path == "/api/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def grafana() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeGrafana.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _http(url: str, *, method: str = "GET", body: dict[str, Any] | None = None,
          token: str | None = None) -> tuple[int, str]:
    """Plain HTTP (not Ray's client, which would present this process's own token)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _gcs_probe(address: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh process asks the GCS for its nodes, with exactly the auth settings in `env`."""
    code = ("from ray._raylet import InnerGcsClient\n"  # what the preStop hook and spot-watch use
            "try:\n"
            f"    gcs = InnerGcsClient.standalone({address!r}, None, 10000)\n"
            "    print('nodes', len(gcs.get_all_node_info(timeout=10)))\n"
            "except Exception as err:\n"
            "    print('refused', type(err).__name__, err)\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_the_rendered_head_refuses_anonymous_requests_and_serves_the_token(tmp_path: Path, grafana: str) -> None:
    """`ray start --head` with the rendered head's rayStartParams and container env, plus what KubeRay's
    authOptions injects (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN from the Secret); only the addresses move to
    loopback and free ports. Without the token the dashboard, the Jobs API and the GCS refuse; with it
    they answer, and the Metrics tab finds Grafana where the head's env says, with our dashboards' uids."""
    cluster = _cluster()
    head = _head(cluster)
    (container,) = head["template"]["spec"]["containers"]
    params = dict(head["rayStartParams"])
    assert params.get("dashboard-host") == "0.0.0.0"  # in the pod: reachable through the head service
    params["dashboard-host"] = "127.0.0.1"  # here: loopback only
    params["metrics-export-port"] = str(free_port())
    gcs_port, dashboard_port = free_port(), free_port()
    loopback = ["--node-ip-address=127.0.0.1", f"--port={gcs_port}", f"--dashboard-port={dashboard_port}",
                f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}", "--include-dashboard=true", "--disable-usage-stats"]
    token = secrets.token_hex(32)  # the Secret's auth_token
    temp_dir = Path(tempfile.mkdtemp(prefix="er-auth-", dir="/tmp"))  # short: Ray's unix socket paths
    manifest_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    manifest_env.update({"ETRID_METRICS_HOST": "127.0.0.1", "RAY_GRAFANA_HOST": grafana,
                         "RAY_PROMETHEUS_HOST": f"http://127.0.0.1:{free_port()}"})
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("RAY_AUTH", "RAY_GRAFANA_", "RAY_PROMETHEUS_", "ETRID_SEED"))}
    injected = kuberay_auth_env(cluster, container, {"etrid-provider": {"auth_token": token}})
    env = {**inherited, **manifest_env, **injected, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    args = [str(Path(sys.executable).with_name("ray")), "start", "--head", *kuberay_start_args(params), *loopback,
            f"--temp-dir={temp_dir}"]
    log = tmp_path / "ray-start.log"
    proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + 120
        while _safe_status(f"{url}/api/gcs_healthz") != 200:  # public, like a readiness probe
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the dashboard did not come up: " + log.read_text()[-3000:]
            time.sleep(0.5)
        status, body = _http(f"{url}/api/authentication_mode")
        assert status == 200 and json.loads(body)["authentication_mode"] == "token"

        job = {"entrypoint": "echo anonymous", "submission_id": "etrid-anonymous"}
        assert _http(f"{url}/api/jobs/", method="POST", body=job)[0] == 401
        assert _http(f"{url}/api/jobs/", method="POST", body=job, token="0" * 64)[0] == 403
        assert _http(f"{url}/api/version")[0] == 401
        assert _http(f"{url}/api/jobs/")[0] == 401
        assert _http(f"{url}/api/jobs/etrid-anonymous", token=token)[0] == 404  # it never ran

        status, body = _http(f"{url}/api/version", token=token)
        assert status == 200 and json.loads(body)["ray_version"] == cluster["spec"]["rayVersion"]
        status, body = _http(f"{url}/api/jobs/", method="POST", token=token,
                             body={"entrypoint": "echo authorized", "submission_id": "etrid-authorized"})
        assert status == 200, body
        assert json.loads(body)["submission_id"] == "etrid-authorized"

        # the Metrics tab: the head asked Grafana where RAY_GRAFANA_HOST says, and hands the browser the
        # iframe host, the datasource and the uids of the dashboards we ship
        status, body = _http(f"{url}/api/grafana_health", token=token)
        assert status == 200, body
        data = json.loads(body)["data"]
        assert "/api/health" in _FakeGrafana.seen
        assert data["grafanaHost"] == manifest_env["RAY_GRAFANA_IFRAME_HOST"] == "http://127.0.0.1:3000"
        assert data["dashboardDatasource"] == manifest_env["RAY_PROMETHEUS_NAME"]
        shipped = {json.loads(next(iter(d["data"].values())))["uid"]
                   for d in _committed("ray-grafana-dashboards.yaml")}
        uids = data["dashboardUids"]  # the tab's keys, camelCased by Ray's REST layer
        for name in ("default", "serve", "serveDeployment", "data", "train"):
            assert uids[name] in shipped, (name, uids)
        # and what Ray wrote for Grafana when it started is what the ConfigMaps carry
        written = temp_dir / "session_latest" / "metrics" / "grafana" / "dashboards"
        for doc in _committed("ray-grafana-dashboards.yaml"):
            ((key, text),) = doc["data"].items()
            on_disk = written / key.removeprefix("ray_")
            assert json.loads(on_disk.read_text()) == json.loads(text), key

        # the GCS: a process without the token is refused; with it, it reads the nodes
        gcs = f"127.0.0.1:{gcs_port}"
        anonymous = _gcs_probe(gcs, {**inherited, "RAY_AUTH_MODE": "disabled"})
        assert anonymous.stdout.startswith("refused AuthenticationError"), anonymous.stdout + anonymous.stderr[-2000:]
        wrong = _gcs_probe(gcs, {**inherited, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "f" * 64})
        assert wrong.stdout.startswith("refused AuthenticationError"), wrong.stdout + wrong.stderr[-2000:]
        authorized = _gcs_probe(gcs, {**inherited, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
        assert authorized.stdout.strip() == "nodes 1", authorized.stdout + authorized.stderr[-2000:]
        print(f"GCS without the token: {anonymous.stdout.strip()}\nwith a wrong one: {wrong.stdout.strip()}")
    finally:
        terminate(proc, 60, group=True, kill_wait_s=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _safe_status(url: str) -> int | None:
    try:
        return _http(url)[0]
    except OSError:
        return None
