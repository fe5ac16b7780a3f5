"""Spot interruptions (target R4): each cloud's notice parsed on its own (none, a notice, malformed
answers), the endpoints' protocols against local emulators (IMDSv2 tokens, GCP and Azure headers),
the watcher's loop, and then the whole path on a real multi-node Ray cluster with the devnet and the
real provider head: a notice for the node running a job drains that node before the deadline, no new
task lands there, its short job finishes there, its long job is re-run elsewhere, and every job is
completed exactly once on chain.

No test talks to a real metadata address: every source is given an emulator's 127.0.0.1 URL, and the
defaults are checked as strings only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from etrid_ray.cli import main as cli_main
from etrid_ray.clouds.interruptions import (
    AwsImds,
    AzureScheduledEvents,
    GcpMetadata,
    MalformedAnswer,
    Notice,
    SpotWatcher,
    parse_aws_instance_action,
    parse_aws_rebalance,
    parse_azure_scheduled_events,
    parse_gcp_maintenance,
    parse_gcp_preempted,
    source_for,
)
from etrid_ray.clouds.interruptions.sources import EndpointError, default_endpoint
from etrid_ray.clouds.registry import notice_clouds
from etrid_ray.kuberay.prestop import Identity, NodeView
from etrid_ray.kuberay.spot_watch import RayNodeDrain, notice_endpoint
from etrid_ray.provider.job import JobState
from tests.helpers.metadata_servers import AwsImdsServer, AzureScheduledEventsServer, GcpMetadataServer
from tests.helpers.ray_head_process import free_port

T0 = 1_790_000_000.0  # a fixed "now" for the pure parsers


# ------------------------------------------------------------------------------------------- parsing: AWS


def test_aws_instance_action_none_notice_and_malformed() -> None:
    assert parse_aws_instance_action(404, b"Not Found") is None
    notice = parse_aws_instance_action(200, b'{"action": "terminate", "time": "2026-09-18T08:22:00Z"}')
    assert notice == Notice("aws", "terminate", 1789719720.0, detail="terminate")
    assert parse_aws_instance_action(200, '{"action":"stop","time":"2026-09-18T08:22:00Z"}').detail == "stop"
    assert parse_aws_instance_action(200, b'{"action": "hibernate", "time": "2026-09-18T08:22:00Z"}').kind == \
        "terminate"  # the instance goes away either way
    # the action is clear but its time is not: still a notice, the watcher supplies AWS's 2 minutes
    assert parse_aws_instance_action(200, b'{"action": "terminate", "time": "soon"}') == \
        Notice("aws", "terminate", None, detail="terminate")
    assert parse_aws_instance_action(200, b'{"action": "terminate"}').deadline is None
    for body in (b"", b"<html>captive portal</html>", b'{"time": "2026-09-18T08:22:00Z"}', b"[]", b'"terminate"',
                 b'{"action": 7}', b'{"action": ""}', b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(MalformedAnswer):
            parse_aws_instance_action(200, body)
    for status in (401, 500, 503):
        with pytest.raises(MalformedAnswer):
            parse_aws_instance_action(status, b"")


def test_aws_rebalance_recommendation_has_no_deadline() -> None:
    assert parse_aws_rebalance(404, b"") is None
    notice = parse_aws_rebalance(200, b'{"noticeTime": "2026-09-18T08:20:00Z"}')
    assert notice is not None and notice.kind == "rebalance" and notice.deadline is None
    assert "2026-09-18T08:20:00Z" in notice.detail
    for body in (b"{}", b"null", b"nope"):
        with pytest.raises(MalformedAnswer):
            parse_aws_rebalance(200, body)


# ------------------------------------------------------------------------------------------- parsing: GCP


def test_gcp_preempted_and_maintenance_event() -> None:
    assert parse_gcp_preempted(200, b"FALSE") is None
    assert parse_gcp_preempted(200, b"TRUE") == Notice("gcp", "terminate", None, detail="preempted")
    assert parse_gcp_preempted(200, "TRUE\n") is not None
    for body in (b"", b"true", b"YES", b"<html>", b"\x00\x01"):
        with pytest.raises(MalformedAnswer):
            parse_gcp_preempted(200, body)
    with pytest.raises(MalformedAnswer):
        parse_gcp_preempted(403, b"Missing Metadata-Flavor:Google header.")

    assert parse_gcp_maintenance(200, b"NONE") is None
    assert parse_gcp_maintenance(200, b"TERMINATE_ON_HOST_MAINTENANCE").kind == "maintenance"
    assert parse_gcp_maintenance(200, b"MIGRATE_ON_HOST_MAINTENANCE").kind == "migrate"  # the VM survives
    for body in (b"", b"REBOOT_EVENTUALLY", b"none"):
        with pytest.raises(MalformedAnswer):
            parse_gcp_maintenance(200, body)


# ----------------------------------------------------------------------------------------- parsing: Azure


def _events(*events: dict[str, Any], incarnation: int = 2) -> bytes:
    return json.dumps({"DocumentIncarnation": incarnation, "Events": list(events)}).encode()


def _event(**kw: Any) -> dict[str, Any]:
    base = {"EventId": "602d9444-d2cd-49c7-8624-8643e7171297", "EventStatus": "Scheduled", "EventType": "Preempt",
            "ResourceType": "VirtualMachine", "Resources": ["vm-a"], "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT",
            "Description": "", "EventSource": "Platform", "DurationInSeconds": -1}
    return {**base, **kw}


def test_azure_scheduled_events() -> None:
    parse = parse_azure_scheduled_events
    assert parse(200, _events(incarnation=1), vm_name="vm-a", now=T0) == []
    (notice,) = parse(200, _events(_event()), vm_name="vm-a", now=T0)
    assert notice == Notice("azure", "terminate", 1474309787.0, detail="Preempt",
                            event_id="602d9444-d2cd-49c7-8624-8643e7171297")
    assert parse(200, _events(_event()), vm_name="vm-b", now=T0) == []  # another VM's eviction
    assert len(parse(200, _events(_event()), vm_name=None, now=T0)) == 1  # name unknown: it counts
    # a started event without NotBefore is happening now; an unreadable time leaves it to the watcher
    (started,) = parse(200, _events(_event(EventStatus="Started", NotBefore="")), vm_name="vm-a", now=T0)
    assert started.deadline == T0
    assert parse(200, _events(_event(NotBefore="tomorrow-ish")), vm_name="vm-a", now=T0)[0].deadline is None
    kinds = {n.detail: n.kind for n in parse(200, _events(
        *(_event(EventId=str(i), EventType=t) for i, t in enumerate(["Reboot", "Redeploy", "Freeze", "Terminate",
                                                                     "Teleport"]))), vm_name="vm-a", now=T0)}
    assert kinds == {"Reboot": "maintenance", "Redeploy": "maintenance", "Freeze": "freeze", "Terminate": "terminate"}
    # malformed events are skipped, the good ones kept
    mixed = _events("junk", {"EventType": 5}, _event(EventStatus="Completed"), _event(EventId="ok"))
    assert [n.event_id for n in parse(200, mixed, vm_name="vm-a", now=T0)] == ["ok"]
    for body in (b"", b"{}", b'{"Events": {}}', b"[]", b"<html>", b'{"Events": null}'):
        with pytest.raises(MalformedAnswer):
            parse(200, body, vm_name="vm-a", now=T0)
    with pytest.raises(MalformedAnswer):
        parse(400, b'{"error": "Bad request"}', vm_name="vm-a", now=T0)


@settings(max_examples=300, deadline=None)
@given(status=st.sampled_from([200, 200, 200, 404, 500]),
       body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                   lambda inner: st.lists(inner, max_size=4)
                                   | st.dictionaries(st.sampled_from(["action", "time", "noticeTime", "Events",
                                                                      "EventType", "EventStatus", "NotBefore",
                                                                      "Resources", "EventId"]), inner, max_size=5),
                                   max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_no_answer_crashes_a_parser(status: int, body: bytes) -> None:
    """Whatever an endpoint (or something in its place) answers: a notice, nothing, or MalformedAnswer."""
    for parse in (parse_aws_instance_action, parse_aws_rebalance, parse_gcp_preempted, parse_gcp_maintenance):
        try:
            out = parse(status, body)
        except MalformedAnswer:
            continue
        assert out is None or isinstance(out, Notice)
    try:
        notices = parse_azure_scheduled_events(status, body, vm_name="vm-a", now=T0)
    except MalformedAnswer:
        return
    assert all(isinstance(n, Notice) for n in notices)


# ------------------------------------------------------------------------------------------- endpoints


@pytest.fixture()
def aws() -> Iterator[AwsImdsServer]:
    with AwsImdsServer() as server:
        yield server  # type: ignore[misc]


def test_imdsv2_token_flow(aws: AwsImdsServer) -> None:
    source = AwsImds(aws.url, token_ttl_s=300)
    assert source.poll() == []
    puts = aws.seen("PUT")
    assert [r.path for r in puts] == ["/latest/api/token"]
    assert puts[0].headers["x-aws-ec2-metadata-token-ttl-seconds"] == "300"
    gets = aws.seen("GET")
    assert [r.path for r in gets] == ["/latest/meta-data/spot/instance-action",
                                      "/latest/meta-data/events/recommendations/rebalance"]
    assert all(r.headers.get("x-aws-ec2-metadata-token") and r.status == 404 for r in gets)

    source.poll()
    assert len(aws.seen("PUT")) == 1  # the session token is reused

    aws.revoke_tokens()  # expired: the next GET is refused, a new token is fetched, the GET retried
    deadline = aws.announce(time.time() + 120)
    assert source.poll() == [Notice("aws", "terminate", deadline, detail="terminate")]
    assert len(aws.seen("PUT")) == 2 and source.tokens_fetched == 2
    assert [r.status for r in aws.seen("GET")][-2:] == [401, 200]

    # the emulator is as strict as IMDSv2: no token, no metadata; no TTL header, no token
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{aws.url}/latest/meta-data/spot/instance-action", timeout=5)
    assert err.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(f"{aws.url}/latest/api/token", method="PUT"), timeout=5)
    assert err.value.code == 400


def test_imdsv2_rebalance_then_action_and_a_refused_token(aws: AwsImdsServer) -> None:
    source = AwsImds(aws.url)
    aws.announce_rebalance()
    (rebalance,) = source.poll()
    assert rebalance.kind == "rebalance" and rebalance.deadline is None
    aws.announce(time.time() + 100)
    (action,) = source.poll()  # the action supersedes the recommendation
    assert action.kind == "terminate" and action.deadline is not None
    aws.respond("/latest/api/token", 403, b"")  # IMDS disabled / hop limit: a clear error, not a crash
    fresh = AwsImds(aws.url)
    with pytest.raises(EndpointError, match="token request answered HTTP 403"):
        fresh.poll()
    with pytest.raises(ValueError):
        AwsImds(aws.url, token_ttl_s=0)


def test_gcp_source_sends_and_checks_the_metadata_flavor() -> None:
    with GcpMetadataServer() as gcp:
        source = GcpMetadata(gcp.url)
        assert source.poll() == []
        assert all(r.headers.get("metadata-flavor") == "Google" for r in gcp.requests)
        assert {r.path for r in gcp.requests} == {"/computeMetadata/v1/instance/preempted",
                                                  "/computeMetadata/v1/instance/maintenance-event"}
        gcp.announce_maintenance("MIGRATE_ON_HOST_MAINTENANCE")
        assert [n.kind for n in source.poll()] == ["migrate"]
        gcp.announce()
        assert [n.kind for n in source.poll()] == ["terminate", "migrate"]
        with pytest.raises(urllib.error.HTTPError) as err:  # no header: refused, as GCE does
            urllib.request.urlopen(f"{gcp.url}/computeMetadata/v1/instance/preempted", timeout=5)
        assert err.value.code == 403
        # a 200 that lacks the flavor header did not come from a metadata server
        gcp.respond("/computeMetadata/v1/instance/preempted", 200, b"TRUE", {"Content-Type": "text/plain"})
        with pytest.raises(MalformedAnswer, match="Metadata-Flavor"):
            source.poll()


def test_azure_source_filters_to_its_own_vm() -> None:
    with AzureScheduledEventsServer(vm_name="vm-a") as azure:
        source = AzureScheduledEvents(azure.url)
        assert source.poll() == [] and source.vm_name == "vm-a"
        assert all(r.headers.get("metadata") == "true" and "api-version=" in r.path for r in azure.requests)
        azure.announce(T0 + 30, resources=["vm-b"])  # a neighbour in the scale set
        assert source.poll() == []
        deadline = azure.announce(T0 + 30, event_type="Preempt")
        (notice,) = source.poll()
        assert (notice.kind, notice.deadline, notice.detail) == ("terminate", deadline, "Preempt")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{azure.url}/metadata/scheduledevents?api-version=2020-07-01", timeout=5)
        assert err.value.code == 400


def test_unreachable_endpoint_is_an_endpoint_error_and_defaults_are_the_real_addresses() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for cloud in ("aws", "gcp", "azure"):
        with pytest.raises(EndpointError):
            source_for(cloud, dead, timeout_s=1).poll()
    # the defaults are only named here, never contacted (each cloud's, from the cloud registry)
    assert notice_clouds() == ["aws", "gcp", "azure"]
    assert {c: default_endpoint(c, env={}) for c in notice_clouds()} == {
        "aws": "http://169.254.169.254", "gcp": "http://metadata.google.internal", "azure": "http://169.254.169.254"}
    assert default_endpoint("gcp", env={"GCE_METADATA_HOST": "127.0.0.1:8080"}) == "http://127.0.0.1:8080"
    assert default_endpoint("aws", env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1/"}) == \
        "http://127.0.0.1:1/"
    assert notice_endpoint("azure", env={"ETRID_METADATA_ENDPOINT": "http://127.0.0.1:2"}) == "http://127.0.0.1:2"


# ------------------------------------------------------------------------------------------- the loop


class Recorder:
    def __init__(self, *outcomes: str) -> None:
        self.outcomes = list(outcomes)
        self.notices: list[Notice] = []

    def __call__(self, notice: Notice) -> Any:
        self.notices.append(notice)
        return self.outcomes.pop(0) if self.outcomes else "done"


def test_watcher_loop_survives_errors_and_acts_once_per_deadline(aws: AwsImdsServer) -> None:
    lines: list[str] = []
    act = Recorder("draining")
    watcher = SpotWatcher(AwsImds(aws.url), act, interval_s=0.02, echo=lines.append)
    assert watcher.poll_once() == (None, None)
    aws.respond("/latest/meta-data/spot/instance-action", 200, b"<html>oops</html>")
    assert watcher.poll_once() == (None, None)
    aws.respond("/latest/meta-data/spot/instance-action", 500, b"")
    assert watcher.poll_once() == (None, None)
    aws.unforce()
    assert watcher.stats.errors == 2 and "MalformedAnswer" in watcher.stats.last_error
    aws.announce_rebalance()
    notice, outcome = watcher.poll_once()
    assert notice is not None and notice.kind == "rebalance" and outcome == "draining"
    assert watcher.poll_once() == (None, None)  # the same recommendation does not drain twice
    deadline = aws.announce(time.time() + 60)
    finished = watcher.run(threading.Event())  # the firmer notice brings a deadline: drained again, done
    assert finished is not None and finished.deadline == deadline
    assert [(n.kind, n.deadline) for n in act.notices] == [("rebalance", None), ("terminate", deadline)]
    assert any("endpoint answering again" in line for line in lines)


def test_watcher_gives_deadline_less_notices_the_clouds_notice_length_and_skips_advisories() -> None:
    clock = [T0]
    with GcpMetadataServer() as gcp:
        act = Recorder("failed", "done")
        watcher = SpotWatcher(GcpMetadata(gcp.url), act, interval_s=0.02, clock=lambda: clock[0],
                              echo=lambda _line: None)
        gcp.announce_maintenance("MIGRATE_ON_HOST_MAINTENANCE")
        assert watcher.poll_once() == (None, None)  # live migration: advisory
        gcp.announce()
        notice, outcome = watcher.poll_once()
        assert outcome == "failed" and notice is not None and notice.deadline == T0 + 30
        clock[0] += 5  # a failed drain is asked again, with the deadline counted from the first sight
        notice, outcome = watcher.poll_once()
        assert outcome == "done" and notice is not None and notice.deadline == T0 + 30
        assert [n.deadline for n in act.notices] == [T0 + 30, T0 + 30]
        assert [n.kind for n in watcher.stats.seen] == ["migrate", "terminate"]


def test_watcher_stops_on_request_and_drain_kinds_are_honoured() -> None:
    with AzureScheduledEventsServer() as azure:
        azure.announce(time.time() + 30, event_type="Reboot")
        act = Recorder()
        watcher = SpotWatcher(AzureScheduledEvents(azure.url), act, interval_s=0.02, drain_kinds=["terminate"],
                              echo=lambda _line: None)
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        assert watcher.run(stop) is None
        assert act.notices == [] and watcher.stats.polls >= 3
    with pytest.raises(ValueError):
        SpotWatcher(AzureScheduledEvents("http://127.0.0.1:1"), act, interval_s=0)


class FakeDrainer:
    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.calls: list[tuple[str, str, float | None]] = []

    def drain(self, node_id: str, reason: str, deadline_s: float | None = None, *,
              deadline_at: float | None = None) -> tuple[bool, str]:
        self.calls.append((node_id, reason, deadline_at))
        return self.accept, "" if self.accept else "node is not alive"

    def wait_dead(self, node_id: str, until: float, poll_s: float = 1.0) -> bool:
        return True


def test_ray_node_drain_passes_the_notice_time_as_rays_deadline() -> None:
    lines: list[str] = []
    drain = RayNodeDrain(Identity(node_id="ab" * 14), echo=lines.append)
    drain.drainer = FakeDrainer()
    drain.node = NodeView("ab" * 14, True, "i-1", "host-1", "10.0.0.1", False, False)
    deadline = time.time() + 90
    assert drain(Notice("aws", "terminate", deadline, detail="terminate")) == "done"
    assert drain(Notice("aws", "rebalance", None)) == "draining"  # no deadline: keep watching
    assert [(c[0], c[2]) for c in drain.drainer.calls] == [("ab" * 14, deadline), ("ab" * 14, None)]
    assert "aws spot interruption: aws terminate (terminate), deadline" in drain.drainer.calls[0][1]
    assert any("drained and stopped" in line for line in lines)
    drain.drainer = FakeDrainer(accept=False)
    assert drain(Notice("aws", "terminate", deadline)) == "failed"
    assert "drain rejected: node is not alive" in lines[-1]


def test_cli_spot_watch_without_an_identity_touches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RAY_CLOUD_INSTANCE_ID", "ETRID_POD_NAME", "ETRID_POD_IP", "KUBERNETES_SERVICE_HOST", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    with AwsImdsServer() as aws:
        result = CliRunner().invoke(cli_main, ["spot-watch", "--cloud", "aws", "--endpoint", aws.url])
        assert result.exit_code == 2, result.output
        assert "nothing identifies this instance's Ray node" in result.output
        assert aws.requests == []
    result = CliRunner().invoke(cli_main, ["spot-watch", "--cloud", "aws", "--drain-on", "terminate,reboot"])
    assert result.exit_code == 2 and "unknown kind(s) reboot" in result.output
    result = CliRunner().invoke(cli_main, ["spot-watch", "--help"])
    assert result.exit_code == 0 and "--endpoint" in result.output and "--drain-on" in result.output


# ------------------------------------------------------------------------------ R4 on a real Ray cluster


class WatcherProcess:
    """`etrid-ray spot-watch` as the node's sidecar would run it: its own process, told its node by the
    env KubeRay gives the Ray container; stopped by its handle."""

    def __init__(self, cloud: str, endpoint: str, address: str, instance_id: str, log: Path) -> None:
        env = {**os.environ, "RAY_ADDRESS": address, "RAY_CLOUD_INSTANCE_ID": instance_id}
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "etrid_ray", "spot-watch", "--cloud", cloud, "--endpoint", endpoint,
             "--interval", "0.2", "--poll-s", "0.2", "--locate-timeout", "60"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_watching(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "spot-watch: watching" not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"watcher not ready: {self.output()}"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=15)


def _task_attempts(task_ids: set[str]) -> list[tuple[str, int, str, float]]:
    """(task id, attempt, node id, started running) for the given tasks, from Ray's GCS task events."""
    from ray._private.state import state
    from ray.core.generated import common_pb2

    running = common_pb2.TaskStatus.Value("RUNNING")
    out = []
    for event in state._get_all_task_events():
        task_id = event.task_id.hex()
        if task_id in task_ids and event.state_updates.node_id:
            started = event.state_updates.state_ts_ns.get(running, 0) / 1e9
            out.append((task_id, event.attempt_number, event.state_updates.node_id.hex(), started))
    return out


@pytest.mark.timeout(180)
def test_r4_a_spot_notice_drains_the_node_before_the_deadline_and_every_job_completes_once(
        fresh_devnet: Any, tmp_path: Path) -> None:
    """R4. Two 3-GPU spot nodes, each running one long (2 GPUs) and one short (1 GPU) job. The victim's
    IMDS announces a termination 10 s ahead; its watcher drains it with that deadline; the short job
    finishes there, the long one (`sleep` checkpoints) leaves at once with its progress saved, jobs
    submitted after the notice land only on the other node, the emptied node stops before the deadline,
    the long job resumes on the other node (preempted: no retry spent); every job once on chain."""
    import ray
    from ray._private.state import available_resources_per_node, state
    from ray.cluster_utils import Cluster

    from etrid_ray.blobs import open_blob_store
    from etrid_ray.chain import ChainClient, dev_signer
    from etrid_ray.chain.models import JobStatus
    from etrid_ray.kuberay.prestop import Drainer
    from tests.provider_support import (
        CONSUMER,
        all_final,
        chain_events,
        completions,
        failure_reasons,
        provider_config,
        read_jobs,
        start_head,
        wait_until,
    )

    long_s, short_s, notice_s = 18.0, 2.0, 10.0
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    names = ("spot-a", "spot-b")
    nodes = {name: cluster.add_node(num_cpus=2, num_gpus=3, env_vars={"RAY_CLOUD_INSTANCE_ID": name})
             for name in names}
    cluster.wait_for_nodes()
    node_id = {name: node.node_id for name, node in nodes.items()}
    imds = {name: AwsImdsServer(instance_id=f"i-{name}").start() for name in names}
    watchers = {name: WatcherProcess("aws", imds[name].url, cluster.address, name, tmp_path / f"{name}.log")
                for name in names}
    client = ChainClient(fresh_devnet.url)
    head = start_head(provider_config(fresh_devnet, tmp_path))
    refs: dict[int, list[Any]] = {}  # every task the head started per job, in order
    watching = threading.Event()
    drained_at: list[float] = []
    victim_used: list[float] = []

    def gpus_used(name: str) -> float:  # Ray leaves a resource out of `available` once none is free
        return 3.0 - available_resources_per_node().get(node_id[name], {}).get("GPU", 0.0)

    def observe() -> None:  # what the head dispatched (its task refs), and the victim node as the GCS sees it
        drainer = Drainer(cluster.address)
        while not watching.is_set():
            with head.book.lock:
                for t in head.book.iter_state(JobState.RUNNING):
                    if t.run is not None and t.run.ref is not None and t.run.ref not in refs.setdefault(t.job_id, []):
                        refs[t.job_id].append(t.run.ref)
            try:
                view = drainer.node(node_id["spot-a"])
                if drained_at == [] and view is not None and (view.draining or not view.alive):
                    drained_at.append(time.time())
                if drained_at and view is not None and view.alive:
                    victim_used.append(gpus_used("spot-a"))
            except Exception:  # noqa: BLE001 - the node is being removed
                pass
            time.sleep(0.05)

    observer = threading.Thread(target=observe, daemon=True)
    observer.start()
    try:
        for watcher in watchers.values():
            watcher.wait_watching()
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))

        def submit(seconds: float, gpus: int, n: int) -> int:
            (job,) = consumer.submit_jobs([{"handler": "sleep", "args": {"seconds": seconds, "n": n},
                                            "resources": {"gpus": gpus}}], payment=10**18, max_compute_time=120)
            return job.job_id

        # one long job per node (2 of 3 GPUs each: two never fit on one node), then one short job per node
        longs = [submit(long_s, 2, n) for n in range(2)]
        wait_until(lambda: all(refs.get(j) for j in longs) and sum(gpus_used(n) for n in names) == 4,
                   30, "both long jobs running")
        shorts = [submit(short_s, 1, 10 + n) for n in range(2)]
        wait_until(lambda: all(gpus_used(n) == 3 for n in names), 30, "every GPU of both nodes busy")
        # … and every task running in its worker: a drain that lands while a lease's worker process is
        # still starting finds the raylet idle (Ray 2.60) and the node stops at once — no short job
        # would finish there (the tasks are retried elsewhere, nothing lost, but not what R4 checks)
        first = {refs[j][0].task_id().hex() for j in longs + shorts}
        wait_until(lambda: {a[0] for a in _task_attempts(first) if a[3] > 0} == first, 30, "every task running")

        # the victim's IMDS announces a termination; the deadline is the instance-action's time
        announced = time.time()
        deadline = imds["spot-a"].announce(announced + notice_s)
        wait_until(lambda: bool(drained_at), notice_s, "the victim draining", poll=0.05)
        print(f"R4: notice -> node draining in {drained_at[0] - announced:.2f}s, {deadline - drained_at[0]:.2f}s "
              "before the deadline")
        assert drained_at[0] < deadline, "drained only after the deadline"
        assert state.get_draining_nodes().get(node_id["spot-a"]) == int(deadline * 1000)  # Ray's drain deadline
        assert "draining Ray node" not in watchers["spot-b"].output()
        late = [submit(1.0, 1, 20 + n) for n in range(2)]  # would fit on the victim's free GPU: must not go there

        wait_until(lambda: time.time() >= deadline, notice_s + 1, "the deadline")
        view = Drainer(cluster.address).node(node_id["spot-a"])
        assert view is not None and view.draining and not view.alive  # emptied before the deadline: Ray stopped it
        cluster.remove_node(nodes["spot-a"], allow_graceful=True)  # the cloud reclaims the instance
        reclaimed_at = time.time()

        ids = longs + shorts + late
        wait_until(lambda: all_final(client, ids), 60, "every job final")
        jobs = read_jobs(client, ids)
        assert all(jobs[j].status == JobStatus.COMPLETED for j in ids), failure_reasons(chain_events(client))
        counts = completions(chain_events(client))
        assert {j: counts[j] for j in ids} == {j: 1 for j in ids}  # 0 lost, none reported twice
        status = head.status()
        assert status.completed == len(ids) and status.errors == {}
        assert sum(status.preempted.values()) == 1 and status.retried == 0  # the victim's long job, free

        victim, other = node_id["spot-a"], node_id["spot-b"]
        task_job = {ref.task_id().hex(): j for j in ids for ref in refs[j]}
        tries: dict[int, list[tuple[int, str, float]]] = {j: [] for j in ids}
        for task_id, attempt, node, began in _task_attempts(set(task_job)):
            tries[task_job[task_id]].append((attempt, node, began))
        for job_tries in tries.values():
            job_tries.sort(key=lambda t: t[2])
        outcomes = {j: ray.get(refs[j][-1], timeout=30) for j in ids}
        story = {j: (tries[j], outcomes[j].node_id[:8], round(outcomes[j].started_at - announced, 2),
                     round(outcomes[j].finished_at - announced, 2)) for j in ids}  # shown when an assertion fails
        # the victim's long job: left at the notice with its progress, resumed on the other node (a new task each
        # run, attempt 0: Ray retried nothing, the head ran it again)
        victim_longs = [j for j in longs if tries[j][0][1] == victim]
        assert len(victim_longs) == 1, story
        victim_long = victim_longs[0]
        assert [(a, n) for a, n, _ in tries[victim_long]] == [(0, victim), (0, other)], story
        left = ray.get(refs[victim_long][0], timeout=30)
        assert left.preempted and left.checkpoint and left.finished_at < deadline, story
        progress = json.loads(open_blob_store(fresh_devnet.http_url).get(left.checkpoint))["checkpoint"]["progress"]
        final = outcomes[victim_long]
        assert final.node_id == other and final.started_at >= drained_at[0], story
        ran = final.finished_at - final.started_at  # resumed from what the first run had slept, not from the start
        assert progress["slept_s"] > 0.2 and ran < long_s - progress["slept_s"] + 1.0, (progress, ran, story)
        assert reclaimed_at >= deadline
        # the victim's short job finished where it ran, before the deadline, in one attempt
        victim_shorts = [j for j in shorts if tries[j][0][1] == victim]
        assert len(victim_shorts) == 1, story
        victim_short = victim_shorts[0]
        assert [(a, n) for a, n, _ in tries[victim_short]] == [(0, victim)], story
        assert outcomes[victim_short].node_id == victim and outcomes[victim_short].finished_at < deadline, story
        # jobs that came after the notice never went to the draining node, though it had a free GPU
        assert all([n for _, n, _ in tries[j]] == [other] and outcomes[j].node_id == other for j in late), story
        # no attempt started on the victim once it was draining; its GPUs in use only went down
        on_victim = [(j, began) for j in ids for _, n, began in tries[j] if n == victim]
        assert sorted(j for j, _ in on_victim) == sorted([victim_long, victim_short])
        assert all(0 < began < drained_at[0] for _, began in on_victim)
        assert victim_used and all(b <= a for a, b in zip(victim_used, victim_used[1:], strict=False))

        assert watchers["spot-a"].proc.wait(timeout=15) == 0
        out = watchers["spot-a"].output()
        assert f"draining Ray node {node_id['spot-a']}" in out and "aws spot interruption" in out
        assert "spot-watch: done" in out
    finally:
        watching.set()
        observer.join(timeout=5)
        codes = {name: w.stop() for name, w in watchers.items()}
        head.stop()
        client.close()
        ray.shutdown()
        cluster.shutdown()
        for server in imds.values():
            server.stop()
    assert codes["spot-b"] == 0 and "draining Ray node" not in watchers["spot-b"].output()  # SIGTERM: quiet stop


@pytest.mark.timeout(120)
def test_gcp_and_azure_watchers_drain_their_own_node_which_stops_once_its_task_finishes(tmp_path: Path) -> None:
    """GCP's preemption (no time given: 30 s from first sight) and Azure's Preempt event (NotBefore) each
    drain their own node on a real cluster with that deadline; the running task finishes there, the node
    then stops by itself, well before the deadline, and the watcher reports it and exits."""
    import ray
    from ray._private.state import state
    from ray.cluster_utils import Cluster
    from ray.core.generated import gcs_pb2

    from etrid_ray.kuberay.prestop import Drainer
    from tests.provider_support import wait_until

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    clouds = ("gcp", "azure")
    nodes = {c: cluster.add_node(num_cpus=1, num_gpus=1, resources={f"vm-{c}": 1},
                                 env_vars={"RAY_CLOUD_INSTANCE_ID": f"vm-{c}"}) for c in clouds}
    cluster.wait_for_nodes()
    servers = {"gcp": GcpMetadataServer().start(), "azure": AzureScheduledEventsServer(vm_name="vm-azure").start()}
    watchers = {c: WatcherProcess(c, servers[c].url, cluster.address, f"vm-{c}", tmp_path / f"{c}.log") for c in clouds}
    try:
        @ray.remote(num_gpus=1, num_cpus=1, max_retries=0)
        def work(seconds: float) -> str:
            time.sleep(seconds)
            return ray.get_runtime_context().get_node_id()

        for watcher in watchers.values():
            watcher.wait_watching()
        running = {c: work.options(resources={f"vm-{c}": 1}).remote(5.0) for c in clouds}
        drainer = Drainer(cluster.address)
        wait_until(lambda: all(_task_attempts({r.task_id().hex()}) and _task_attempts({r.task_id().hex()})[0][3] > 0
                               for r in running.values()), 30, "both tasks running")
        announced = time.time()
        deadlines = {"gcp": servers["gcp"].announce(), "azure": servers["azure"].announce(announced + 20)}
        draining: dict[str, int] = {}

        def both_draining() -> bool:
            draining.update({c: d for c in clouds if (d := state.get_draining_nodes().get(nodes[c].node_id))})
            return len(draining) == 2

        wait_until(both_draining, 10, "both nodes draining", poll=0.05)
        assert draining["azure"] == int(deadlines["azure"] * 1000)  # NotBefore, exactly
        assert announced + 30 - 0.5 <= draining["gcp"] / 1000 <= time.time() + 30  # 30 s from first sight
        assert {c: ray.get(r, timeout=30) for c, r in running.items()} == {c: nodes[c].node_id for c in clouds}

        for cloud in clouds:
            assert watchers[cloud].proc.wait(timeout=30) == 0, watchers[cloud].output()
            assert "drained and stopped" in watchers[cloud].output()
        assert time.time() < deadlines["azure"]  # both stopped by themselves, long before their deadlines
        infos = {i.node_id.hex(): i for i in drainer.gcs.get_all_node_info(timeout=10).values()}
        for cloud in clouds:
            info = infos[nodes[cloud].node_id]
            assert info.state == gcs_pb2.GcsNodeInfo.DEAD
            assert f"{cloud} spot interruption: {cloud} terminate" in info.death_info.reason_message
        assert "(Preempt)" in infos[nodes["azure"].node_id].death_info.reason_message
        assert [r.path for r in servers["azure"].seen(prefix="/metadata/instance")] == [
            "/metadata/instance/compute/name?api-version=2021-02-01&format=text"]
    finally:
        for watcher in watchers.values():
            watcher.stop()
        ray.shutdown()
        cluster.shutdown()
        for server in servers.values():
            server.stop()


def test_spot_worker_groups_run_the_watcher_as_a_native_sidecar() -> None:
    """Every spot pool's pod runs `etrid-ray spot-watch --cloud <its cloud>` beside the Ray container
    (an init container with restartPolicy Always), told its node by the downward API and the GCS by
    the head service; local and on-demand pools do not."""
    from etrid_ray.config import ProviderConfig, pools_from_config
    from etrid_ray.kuberay import render as r
    from etrid_ray.pools import Pool

    config = ProviderConfig(gcp_enabled=True, azure_enabled=True, pools=[
        Pool(name="aws-ondemand", kind="aws", spot=False, max_nodes=1)])
    pools = {p.name: p for p in pools_from_config(config)}
    groups = {g["groupName"]: g for g in r.raycluster(config)["spec"]["workerGroupSpecs"]}
    spot_watch = cli_main.commands["spot-watch"]
    for name, group in groups.items():
        pool, spec = pools[name], group["template"]["spec"]
        if not (pool.is_cloud and pool.spot):
            assert "initContainers" not in spec, name
            continue
        (sidecar,) = spec["initContainers"]
        assert sidecar["restartPolicy"] == "Always" and sidecar["image"] == spec["containers"][0]["image"]
        command = sidecar["command"]
        assert command[:4] == ["python", "-m", "etrid_ray", "spot-watch"]
        params = spot_watch.make_context("spot-watch", command[4:]).params  # the CLI accepts exactly these
        assert params["cloud"] == pool.kind and params["linger"] is True
        env = {e["name"]: e for e in sidecar["env"]}
        assert env["RAY_ADDRESS"]["value"] == "etrid-provider-head-svc.etrid-ai-compute.svc.cluster.local:6379"
        assert env["ETRID_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert "nvidia.com/gpu" not in sidecar["resources"]["limits"]
    assert {n for n, g in groups.items() if "initContainers" in g["template"]["spec"]} == {
        "aws-spot-a100", "gcp-spot-a100", "azure-spot-a100"}
