"""Pools are Ray node labels: a worker group carries its pool's labels, the head steers a job with a label
selector and asks for capacity with bundle label selectors, and reads a node's pool back from its labels.

The pure parts are checked against Ray's own validators; the last test runs a rendered RayCluster on Ray's
fake multi-node autoscaler (v2) and shows a capacity request growing exactly the selected group and a job
landing on a node of its pool, found by its labels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
from ray._private.label_utils import (
    validate_fallback_strategy,
    validate_label_selector,
    validate_node_label_syntax,
    validate_node_labels,
)

from etrid_ray.config import load_config, pools_from_config
from etrid_ray.demo.fake_cluster import FakeKubeRayCluster
from etrid_ray.kuberay.render import raycluster
from etrid_ray.local_ray import LocalRay
from etrid_ray.pools import (
    ACCELERATOR_LABEL,
    MARKET_LABEL,
    POOL_LABEL,
    CapacityRequest,
    Pool,
    capacity_request,
    label_value,
    pool_selector,
)
from etrid_ray.provider.cluster_port import RayCluster
from etrid_ray.provider.cluster_view import ClusterView
from etrid_ray.provider.task import dispatch_options, options_problem, run_job
from tests.provider_support import wait_until

AWS, AZURE, GCP, LOCAL = "aws-spot-a100", "azure-spot-a100", "gcp-spot-a100", "local-gpu"


def test_a_pools_labels_name_it_and_pass_rays_own_checks() -> None:
    local = Pool(name="local-gpu", kind="local", accelerator="NVIDIA A100-SXM4-80GB", region="local")
    spot = Pool(name="aws-spot-h100", kind="aws", accelerator="H100", region="us-east-1")
    on_demand = Pool(name="aws-od-h100", kind="aws", accelerator="H100", region="us-east-1", spot=False)
    tee = Pool(name="azure-tee-h100", kind="azure", accelerator="H100", region="eastus2", tee="sev-snp")
    for pool in (local, spot, on_demand, tee):
        validate_node_label_syntax(pool.labels())  # keys and values: Ray (and Kubernetes) syntax
        validate_node_labels(pool.labels())  # `ray start --labels` refuses keys under `ray.io/`
        assert pool.labels()[POOL_LABEL] == pool.name
        assert validate_label_selector(pool.selector()) is None
    assert local.labels()[ACCELERATOR_LABEL] == "NVIDIA-A100-SXM4-80GB"  # NVML's name, in label syntax
    assert [p.labels()[MARKET_LABEL] for p in (local, spot, on_demand)] == ["owned", "spot", "on-demand"]
    assert tee.labels()["etrid.ai/tee"] == "sev-snp" and "etrid.ai/tee" not in spot.labels()
    assert spot.resources() == {"GPU": 8.0}  # no resource names a pool any more


@pytest.mark.parametrize(("text", "value"), [("A100", "A100"), (" weird  name ", "weird-name"), ("-x-", "x"),
                                             ("a" * 80, "a" * 63), ("MI300X (OAM)", "MI300X-OAM"), ("ü", "")])
def test_label_value_always_yields_what_ray_accepts(text: str, value: str) -> None:
    with pytest.raises(ValueError):  # Ray refuses the raw text …
        validate_node_label_syntax({"etrid.ai/x": text + " "})
    assert label_value(text) == value
    validate_node_label_syntax({"etrid.ai/x": label_value(text)})  # … and takes ours


def test_capacity_bundles_carry_their_pools_selector_one_for_one() -> None:
    pools = {p.name: p for p in pools_from_config(load_config(env={}))}
    got = capacity_request(pools, {AWS: 2, GCP: 1, LOCAL: 0})
    assert got.bundles == ({"GPU": 8.0},) * 3
    assert got.selectors == (pool_selector(AWS), pool_selector(AWS), pool_selector(GCP))
    assert got.per_pool() == {AWS: 2, GCP: 1}
    assert capacity_request(pools, {}) == CapacityRequest()


def test_dispatch_selects_the_pool_by_label_with_an_ordered_fallback_ray_accepts() -> None:
    plain = dispatch_options(1.0, 1.0, AWS)
    assert plain == {"num_gpus": 1.0, "num_cpus": 1.0, "label_selector": {POOL_LABEL: AWS}}
    assert "resources" not in plain
    own = dispatch_options(1.0, 1.0, None, own_pool=LOCAL)  # no placement: the head's own pool, when present
    assert own["label_selector"] == {POOL_LABEL: LOCAL}
    assert "label_selector" not in dispatch_options(1.0, 1.0, None)
    soft = dispatch_options(1.0, 1.0, AWS, fallback=[GCP, AWS, LOCAL, GCP])
    assert soft["fallback_strategy"] == [{"label_selector": {POOL_LABEL: GCP}}, {"label_selector": {POOL_LABEL: LOCAL}}]
    assert validate_fallback_strategy(soft["fallback_strategy"]) is None
    assert options_problem(soft) is None
    run_job.options(**soft)  # Ray's own option validation takes it


def test_the_cluster_view_reads_a_nodes_pool_from_its_labels() -> None:
    class Port:
        def nodes(self) -> list[dict]:
            return [{"NodeID": "a", "Alive": True, "Resources": {"GPU": 8.0}, "Labels": pool_selector(AWS)},
                    {"NodeID": "h", "Alive": True, "Resources": {"CPU": 1.0}, "Labels": {"ray.io/node-id": "h"}},
                    {"NodeID": "l", "Alive": True, "Resources": {"GPU": 4.0}}]  # no labels: a bare local node

        def available_per_node(self) -> dict:
            return {"a": {"GPU": 2.0}, "l": {"GPU": 4.0}}

        def draining(self) -> set[str]:
            return set()

    view = ClusterView.read(Port())
    assert [n.pool for n in view.nodes] == [AWS, None, None]
    assert view.has_pool(AWS) and not view.has_pool(GCP)
    loads = view.pools(default_pool=LOCAL)
    assert (loads[AWS].total, loads[AWS].free) == (8.0, 2.0)
    assert loads[LOCAL].total == 4.0 and len(loads) == 2  # the CPU-only head is no pool


def test_a_capacity_request_grows_the_selected_group_and_a_job_lands_on_its_pool(tmp_path: Path) -> None:
    """A rendered RayCluster (local, AWS, GCP and Azure groups with their labels) on the fake multi-node
    autoscaler v2: bundles selected to GCP start a GCP node and nothing else; a job selected to AWS makes the
    autoscaler start an AWS node and runs there; the head's view finds each node's pool in its labels. And why
    placed jobs get no `fallback_strategy`: Ray takes the fallback at once when the first pool has no node,
    instead of growing that pool."""
    config = load_config(env={}, overrides={"local_nodes": 1, "gpus": {"count": 1}, "aws_max_nodes": 1,
                                            "gcp_max_nodes": 1, "azure_max_nodes": 1})
    pools = {p.name: p for p in pools_from_config(config)}
    cluster = FakeKubeRayCluster(raycluster(config), tmp_path / "fake", idle_timeout_s=30, max_workers_per_type=1,
                                 cpus_per_node=1).start()
    try:
        ray.init(address=cluster.address, logging_level="ERROR", namespace="etrid-labels")
        port = RayCluster()

        def per_pool() -> dict[str | None, int]:
            out: dict[str | None, int] = {}
            for node in ClusterView.read(port).alive:
                out[node.pool] = out.get(node.pool, 0) + 1
            return out

        wait_until(lambda: per_pool().get(LOCAL) == 1, 90, "the local group at its minReplicas")
        port.request(capacity_request(pools, {GCP: 1}))
        wait_until(lambda: per_pool().get(GCP) == 1, 90, "a GCP node for the GCP bundle")
        assert per_pool() == {None: 1, LOCAL: 1, GCP: 1}  # the head, local, and the selected group only
        gcp = next(n for n in ClusterView.read(port).alive if n.pool == GCP)
        assert gcp.labels["etrid.ai/cloud"] == "gcp" and gcp.labels["etrid.ai/region"] == pools[GCP].region

        def run(job_id: int, options: dict) -> str | None:
            outcome = ray.get(run_job.options(**options).remote(
                job_id, '{"handler": "echo", "args": {"payload": 1}}', f"file://{tmp_path / 'blobs'}", 1024),
                timeout=120)
            assert outcome.ok, outcome.reason
            return next(n for n in ClusterView.read(port).nodes if n.node_id == outcome.node_id).pool

        assert run(1, dispatch_options(1.0, 0.0, AZURE, fallback=[GCP])) == GCP  # Azure at zero: GCP at once
        assert AZURE not in per_pool()
        assert run(2, dispatch_options(1.0, 0.0, AWS)) == AWS  # no fallback: the autoscaler grows AWS for it
        aws = next(n for n in ClusterView.read(port).alive if n.pool == AWS)
        assert aws.labels["etrid.ai/market-type"] == "spot"
        assert AZURE not in per_pool()
        port.request(CapacityRequest())
    finally:
        ray.shutdown()
        cluster.stop()


def test_a_local_ray_head_passes_its_labels_in_ray_starts_own_syntax() -> None:
    from ray._private.label_utils import parse_node_labels_string

    labels = Pool(name="local-gpu", kind="local", accelerator="NVIDIA H100 80GB HBM3").labels()
    args = LocalRay(labels=labels).args()
    assert parse_node_labels_string(args[args.index("--labels") + 1]) == labels  # what `ray start` parses
    assert "--labels" not in LocalRay().args()  # `etrid-ray provider run`'s own cluster: no pool at all
