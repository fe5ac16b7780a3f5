"""Running the provider: `etrid-ray provider run` / `provider stop` and the Ray Jobs entrypoint `jobs/provider.py`.

Who owns the head, and why. Ray gives every task the job id of whoever submitted it; the head's GPU
tasks therefore belong to the job (driver) that created the head actor, detached or not. When that
driver exits, the raylet force-exits the job's idle workers ("Force exiting worker whose job has
exited") and every later task pays for a new worker process: measured 25.6 → 5.8 jobs/s, the
`max_calls=0` reuse lost. No Ray option moves a detached actor's tasks to another job, so the head
lives exactly as long as a driver that stays alive:

- `provider run` (foreground): the CLI is the driver and the head is a *non-detached* named actor it
  owns. Ctrl-C / SIGTERM drain it; `provider stop` from anywhere drains it too. If the CLI is killed
  with SIGKILL, Ray kills the head with its owner: nothing keeps claiming without an operator, and the
  next `provider run` recovers the jobs left in flight from chain state and the journal.
- `provider run --detach` (a running cluster): submits `python -m etrid_ray.service.runner` as a Ray
  Job through the dashboard's Jobs API and returns. That job's driver owns the head and outlives the
  CLI, so worker reuse survives the CLI's exit; `etrid-ray provider stop` ends it (the driver exits
  when its head is gone). This is also what `ray job submit -- python jobs/provider.py` does.

The signing key. For a local Ray that `provider run` starts, the key is moved out of the environment
into a 0600 file under `~/.etrid-ray/run/` that only the head reads (`seed_file`), and secret env vars are
removed before Ray starts: a local `ray.init` hands its environment to every worker, and consumer code
runs in those workers. For a cluster at `ray_address`, the CLI's environment never reaches the cluster,
so a preflight task on the head node reports (booleans only) whether the head will find its key there,
and `provider run` refuses with the fix when it will not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from etrid_ray.chain.errors import ConfigError
from etrid_ray.config import ProviderConfig, load_config
from etrid_ray.local_ray import LocalRay
from etrid_ray.provider.gpu_info import gpu_facts
from etrid_ray.ray_auth import (
    AUTH_MODE_ENV,
    TOKEN_ENV,
    TOKEN_PATH_ENV,
    RayAuthError,
    dashboard_login,
    etrid_home,
    prepare_driver,
    use_token,
)
from etrid_ray.service.actor import (
    ACTOR_NAME,
    clear_drain,
    drain_and_stop,
    find_head,
    key_preflight,
    launch_head,
    reachable,
    stop_head,
)
from etrid_ray.telemetry.logs import SECRET_ENV

STATUS_KEYS = ("best_block", "queue_depth", "running", "claimed", "completed", "failed", "reported",
               "earnings_edsc", "draining")
Echo = Callable[[str], Any]
TOKEN_HELP = (f"this cluster may require a Ray auth token: set {TOKEN_ENV}, or {TOKEN_PATH_ENV} to a file holding "
              f"it, or put it in ~/.ray/auth_token (`ray get-auth-token` on the head node prints it)")


def run_dir() -> Path:
    return etrid_home() / "run"


# connecting --------------------------------------------------------------------------------------------


def _reachable(address: str) -> None:
    try:
        reachable(address)
    except LookupError as err:
        raise ConfigError(f"{err} (or ray_address in the config)") from None


def connect_existing(address: str, namespace: str) -> None:
    """`ray.init` to a running cluster with the token, if any; failures name the address and the token.
    (Ray reads `RAY_AUTH_MODE` when it is imported: the CLI calls `ray_auth.prepare_driver` before it
    imports this module; the export here serves callers that imported Ray after setting it up.)"""
    if ray.is_initialized():
        return
    try:
        token = prepare_driver(starts_cluster=False)
    except RayAuthError as err:
        raise ConfigError(str(err)) from None
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, namespace=namespace, logging_level="ERROR", log_to_driver=False)
    except Exception as err:  # ConnectionError, RuntimeError from the token check, …: one line, never a trace
        hint = TOKEN_HELP if token is None else (
            f"the token from {token.describe()} may not be this cluster's ({AUTH_MODE_ENV}=token is set)")
        raise ConfigError(f"cannot connect to the Ray cluster at {address} ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}): check --address / ray_address; "
                          f"{hint}") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale_seed_files() -> None:
    """Seed files of `provider run`s that were killed (SIGKILL leaves no chance to remove them)."""
    for path in run_dir().glob("seed-*"):
        try:
            pid = int(path.name.split("-", 1)[1])
        except ValueError:
            continue
        if not _pid_alive(pid):
            path.unlink(missing_ok=True)


def write_seed_file(secret: str) -> Path:
    """The key in a file only its owner can read, named after this process (removed on exit)."""
    directory = run_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _clean_stale_seed_files()
    path = directory / f"seed-{os.getpid()}"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return path


def strip_secret_env(config: ProviderConfig) -> None:
    """Removes the key and cloud secrets from this process's environment before it starts Ray, so no
    Ray process (the head's task workers run consumer code) inherits them."""
    for name in {*SECRET_ENV, config.seed_env}:
        os.environ.pop(name, None)


@dataclass
class Session:
    """The cluster `provider run` talks to, and what it must undo on exit."""

    config: ProviderConfig  # as the head gets it (for a local Ray: seed_file = the run file)
    address: str
    local: bool
    seed_file: Path | None = None
    owns_ray: bool = False
    local_ray: LocalRay | None = None  # the Ray this command started, stopped with it

    def close(self) -> None:
        if self.seed_file is not None:
            self.seed_file.unlink(missing_ok=True)
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
        if self.local_ray is not None:
            self.local_ray.stop()


def start_local(config: ProviderConfig, echo: Echo) -> Session:
    """A local Ray advertising the GPUs the head will claim for: NVML's, or the config's `gpus.count`
    simulated when no NVIDIA driver is present (jobs then run on the CPU). No `pool:` resource is added:
    with none in the cluster the head steers nothing and claims against the GPU total, whereas
    `pool:local-gpu` would make it take this machine for a KubeRay cluster and plan across cloud pools."""
    facts = gpu_facts(config.gpus)
    seed_file = None
    if config.seed_file is None:
        secret = os.environ.get(config.seed_env, "").strip()
        if secret:
            seed_file = write_seed_file(secret)
            config = config.model_copy(update={"seed_file": seed_file})
    strip_secret_env(config)
    try:
        use_token()  # effective only if Ray was not imported yet: the CLI calls ray_auth.prepare_driver first
    except RayAuthError as err:
        raise ConfigError(str(err)) from None
    # `ray start` in a session of its own (see etrid_ray.local_ray): Ctrl-C in this terminal reaches this
    # command, which drains the head, and not Ray's own processes, which the drain still needs.
    local = LocalRay(num_gpus=facts.count).start(run_dir() / f"ray-{os.getpid()}.log")
    try:
        ray.init(address=local.gcs_address, namespace=config.namespace, logging_level="WARNING")
    except BaseException:
        local.stop()
        raise
    address = local.gcs_address
    if facts.measured:
        echo(f"local Ray at {address}: {facts.count} × {facts.model} GPUs ({facts.source_title})")
    else:
        echo(f"local Ray at {address}: {facts.count} GPUs SIMULATED (no NVIDIA or AMD driver; gpus.count from the "
             "config) — jobs run on the CPU")
    echo(dashboard_login(local.dashboard_url))
    return Session(config, address, local=True, seed_file=seed_file, owns_ray=True, local_ray=local)


def check_remote_key(config: ProviderConfig, address: str) -> None:
    """Refuses (ConfigError) when the head node will not find the key the way the head reads it."""
    seen = key_preflight(config)
    if config.seed_file is not None:
        if not seen["file_readable"]:
            raise ConfigError(
                f"seed_file {config.seed_file} is missing, empty or unreadable on the head node of {address}: "
                "the head reads its key there, not where `provider run` runs — mount the file on the head "
                "node (a Kubernetes Secret volume) at that path")
        return
    if not seen["env_set"]:
        raise ConfigError(
            f"{config.seed_env} is not set on the head node of {address}: the head reads its key there, not "
            f"from this shell — set {config.seed_env} in the environment of `ray start --head` (the head "
            "pod's env from a Secret), or mount a file holding the key on the head node and set seed_file "
            "in the config (preferred: then no Ray worker's environment holds the key)")


def connect(config: ProviderConfig, address: str | None, echo: Echo) -> Session:
    """A local Ray (no address anywhere) or the cluster at `address` / `ray_address`, checked for the key."""
    addr = address or config.ray_address
    if ray.is_initialized():  # a caller (a test, a notebook) already connected
        return Session(config, ray.get_runtime_context().gcs_address, local=False)
    if not addr:
        return start_local(config, echo)
    connect_existing(addr, config.namespace)
    session = Session(config, ray.get_runtime_context().gcs_address, local=False, owns_ray=True)
    try:
        check_remote_key(config, addr)
    except BaseException:
        session.close()
        raise
    return session


# running ----------------------------------------------------------------------------------------------


class Signals:
    """SIGINT/SIGTERM counted: the first drains, a second fails what is still in flight. Copies of one
    request arriving together count once (`timeout`, a shell's job control or a supervisor may signal
    the process and then its group within milliseconds); a person's second Ctrl-C comes later."""

    SAME_REQUEST_S = 1.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.count = 0
        self.event = threading.Event()
        self._clock = clock
        self._last = -1e9

    def received(self) -> None:
        now = self._clock()
        if now - self._last >= self.SAME_REQUEST_S:
            self.count += 1
        self._last = now
        self.event.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Signals]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(*_: object) -> None:
            self.received()

        for sig in old:
            signal.signal(sig, handler)
        try:
            yield self
        finally:
            for sig, previous in old.items():
                signal.signal(sig, previous)


def _summary(status: dict[str, Any]) -> str:
    return json.dumps({k: status[k] for k in STATUS_KEYS if k in status})


def serve(head: Any, *, run_for: float | None = None, status_every: float = 10.0, now: bool = False,
          echo: Echo = print, signals: Signals | None = None) -> dict[str, Any]:
    """Reports the head's status until a signal, `run_for`, or a stop from elsewhere; then drains it."""
    signals = signals or Signals()
    deadline = time.monotonic() + run_for if run_for else None
    status: dict[str, Any] = {}
    while True:
        wait = status_every if deadline is None else max(0.0, min(status_every, deadline - time.monotonic()))
        signals.event.wait(wait)
        try:
            status = ray.get(head.status.remote(), timeout=60)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as err:
            echo(f"the provider head is gone ({type(err).__name__}): stopped by `etrid-ray provider stop`?")
            return status
        echo(_summary(status))
        if status.get("draining") and status.get("drained"):  # a `provider stop` that did not finish the job
            stop_head(head)
            return status
        if signals.count or (deadline is not None and time.monotonic() >= deadline):
            break
    echo("draining: no new claims; in-flight jobs finish and are settled" if not now and signals.count < 2
         else "draining now: in-flight jobs are failed on chain")
    return drain_and_stop(head, now=now or signals.count >= 2, echo=echo, escalate=lambda: signals.count >= 2)


def launch(session: Session) -> Any:
    """The head, owned by this driver; refuses when another driver's head already runs in the namespace."""
    ns = session.config.namespace
    if find_head(ns) is not None:
        raise ConfigError(f"a provider head ({ACTOR_NAME!r}, namespace {ns!r}) already runs on the cluster at "
                          f"{session.address}: stop it first with `etrid-ray provider stop --address "
                          f"{session.address} --namespace {ns}`, or use another namespace")
    clear_drain(ns)  # an explicit start lifts an earlier stop
    return launch_head(session.config, detached=False)


def run_provider(config: ProviderConfig, *, address: str | None = None, run_for: float | None = None,
                 status_every: float = 10.0, now: bool = False, echo: Echo = print) -> dict[str, Any]:
    """Connects (see `connect`), launches the head it owns and serves until stopped (see `serve`)."""
    session = connect(config, address, echo)
    try:
        # after ray.init, which installs its own SIGTERM handler (a stack dump and exit)
        with Signals().installed() as signals:
            head = launch(session)
            echo(f"provider head running (namespace {session.config.namespace}); stop: Ctrl-C, or "
                 f"`etrid-ray provider stop --address {session.address}`")
            return serve(head, run_for=run_for, status_every=status_every, now=now, echo=echo, signals=signals)
    finally:
        session.close()


def submit_detached(config: ProviderConfig, address: str | None, *, python: str = "python", echo: Echo = print,
                    wait_s: float = 180.0) -> str:
    """`provider run --detach`: the head runs under a Ray Job whose driver outlives this process (see the
    module docstring). Returns the job's submission id once the head answers."""
    addr = address or config.ray_address
    if not addr:
        raise ConfigError("--detach needs a running Ray cluster that outlives this command: set --address or "
                          "ray_address (start one with `ray start --head`); without one, run in the foreground")
    session = connect(config, addr, echo)
    try:
        ns = config.namespace
        if find_head(ns) is not None:
            raise ConfigError(f"a provider head already runs in namespace {ns!r} at {session.address}: stop it "
                              f"first with `etrid-ray provider stop --address {session.address} --namespace {ns}`")
        from ray.job_submission import JobStatus, JobSubmissionClient

        dashboard = ray._private.worker.get_dashboard_url()
        if not dashboard:
            raise ConfigError(f"the cluster at {addr} runs no dashboard, which --detach submits the Ray Job to: "
                              "start it with `ray start --head --include-dashboard true`")
        client = JobSubmissionClient(dashboard if "://" in dashboard else f"http://{dashboard}")
        entrypoint = shlex.join([python, "-m", "etrid_ray.service.runner", "--config-json",
                                 config.model_dump_json(exclude_defaults=True)])
        job_id = client.submit_job(entrypoint=entrypoint, submission_id=f"etrid-provider-{ns}-{int(time.time())}",
                                   entrypoint_num_cpus=0, metadata={"etrid": "provider", "namespace": ns})
        deadline = time.monotonic() + wait_s
        while find_head(ns) is None:
            state = client.get_job_status(job_id)
            if state in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.SUCCEEDED):
                tail = "\n".join(client.get_job_logs(job_id).splitlines()[-15:])
                raise ConfigError(f"the provider job {job_id} ended ({state}) before its head started:\n{tail}")
            if time.monotonic() > deadline:
                raise ConfigError(f"the provider job {job_id} started no head within {wait_s:.0f}s; see "
                                  f"`ray job logs {job_id}`")
            time.sleep(0.5)
        echo(f"provider head running under Ray job {job_id} (namespace {ns}); logs: `ray job logs {job_id}`; "
             f"stop: `etrid-ray provider stop --address {session.address}`")
        return str(job_id)
    finally:
        session.close()


def stop_provider(address: str, namespace: str, *, now: bool = False, timeout: float | None = None,
                  echo: Echo = print) -> dict[str, Any]:
    """`provider stop`: drains the head in `namespace` and stops it for good (Ctrl-C here: fail in flight)."""
    owns = not ray.is_initialized()
    connect_existing(address, namespace)
    try:
        head = find_head(namespace)
        if head is None:
            raise LookupError(f"no provider head ({ACTOR_NAME!r}) in namespace {namespace!r} at {address}")
        with Signals().installed() as signals:
            return drain_and_stop(head, now=now, timeout=timeout, echo=echo, escalate=lambda: signals.count > 0)
    finally:
        if owns:
            ray.shutdown()


# the Ray Jobs entrypoint ---------------------------------------------------------------------------------


def job_main(argv: list[str] | None = None) -> int:
    """Runs inside a Ray Job (`ray job submit … -- python jobs/provider.py --config FILE`, or what
    `provider run --detach` submits): this driver owns the head until it is stopped."""
    parser = argparse.ArgumentParser(description=job_main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="provider config (YAML or JSON)")
    source.add_argument("--config-json", help="provider config as one JSON object (what --detach passes)")
    parser.add_argument("--run-for", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--status-every", type=float, default=10.0)
    parser.add_argument("--now", action="store_true", help="on stop, fail in-flight jobs at once")
    args = parser.parse_args(argv)
    try:
        if args.config_json is not None:
            config = load_config(overrides=json.loads(args.config_json))
        else:
            config = load_config(args.config)
        run_provider(config, address="auto", run_for=args.run_for, status_every=args.status_every, now=args.now)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(job_main())
