"""Each cloud's notice endpoint, polled over plain HTTP: AWS IMDSv2, GCP's metadata server, Azure's
Scheduled Events. `poll()` returns the notices now announced (parsed by `notice.py`) or raises
`EndpointError` / `MalformedAnswer`.

Every endpoint is configurable (`endpoint=`): the tests point them at local emulators
(`tests.helpers.metadata_servers`). Requests never go through an HTTP proxy (a metadata address
is link-local; a proxy would answer for the wrong machine) and never follow redirects.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from typing import Protocol

from etrid_ray.clouds.interruptions.notice import (
    MAX_BODY,
    MalformedAnswer,
    Notice,
    parse_aws_instance_action,
    parse_aws_rebalance,
    parse_azure_scheduled_events,
    parse_gcp_maintenance,
    parse_gcp_preempted,
)
from etrid_ray.clouds.registry import cloud as cloud_of
from etrid_ray.clouds.registry import find, notice_clouds

log = logging.getLogger(__name__)

# Each cloud's real metadata address (`Cloud.metadata_endpoint`), used only when nothing else is configured (the
# tests always configure one), and the SDK's own override of it (`Cloud.metadata_endpoint_env`: botocore's,
# google-auth's), honoured so one setting serves both, are the cloud registry's.

AWS_TOKEN_PATH = "/latest/api/token"
AWS_TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
AWS_TOKEN_HEADER = "X-aws-ec2-metadata-token"
AWS_INSTANCE_ACTION = "/latest/meta-data/spot/instance-action"
AWS_REBALANCE = "/latest/meta-data/events/recommendations/rebalance"
GCP_PREEMPTED = "/computeMetadata/v1/instance/preempted"
GCP_MAINTENANCE = "/computeMetadata/v1/instance/maintenance-event"
AZURE_EVENTS = "/metadata/scheduledevents?api-version=2020-07-01"
AZURE_VM_NAME = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"


class EndpointError(OSError):
    """The endpoint could not be reached or refused the request."""


class NoticeSource(Protocol):
    cloud: str
    endpoint: str

    def poll(self) -> list[Notice]: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def http(method: str, url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes, dict[str, str]]:
    """One request without proxies or redirects: (status, body, headers); a 4xx/5xx is an answer too."""
    request = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "PUT" else None)
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            return resp.status, resp.read(MAX_BODY + 1), dict(resp.headers.items())
    except urllib.error.HTTPError as err:
        try:
            body = err.read(MAX_BODY + 1)
        except OSError:
            body = b""
        return err.code, body, dict(err.headers.items()) if err.headers else {}
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise EndpointError(f"{method} {url}: {type(reason).__name__}: {reason}") from err


def default_endpoint(cloud: str, env: dict[str, str] | None = None, *, override: str | None = None) -> str:
    """Where this node's notices are read: `override` (the config's `clouds.metadata_endpoint`, which the
    spot-watch reads: `kuberay.spot_watch.notice_endpoint`), else the SDK's override variable
    (`Cloud.metadata_endpoint_env`), else the cloud's own address. This runs on the node itself: it reads its
    own environment."""
    facts = cloud_of(cloud)
    env = dict(os.environ if env is None else env)
    override = override or env.get(facts.metadata_endpoint_env or "", "")
    if override:
        return override if "://" in override else f"http://{override}"  # GCE_METADATA_HOST is host[:port]
    if facts.metadata_endpoint is None:
        raise ValueError(f"{cloud} has no metadata endpoint")
    return facts.metadata_endpoint


class AwsImds:
    """IMDSv2: a session token from `PUT /latest/api/token`, reused until shortly before it expires and
    fetched again when the service answers 401; then the spot instance action and the rebalance
    recommendation."""

    cloud = "aws"

    def __init__(self, endpoint: str | None = None, *, timeout_s: float = 2.0, token_ttl_s: int = 21600,
                 rebalance: bool = True) -> None:
        if not 1 <= token_ttl_s <= 21600:
            raise ValueError("token_ttl_s must be 1..21600 (IMDSv2's range)")
        self.endpoint = (endpoint or default_endpoint("aws")).rstrip("/")
        self.timeout_s = timeout_s
        self.token_ttl_s = token_ttl_s
        self.rebalance = rebalance
        self._token: str | None = None
        self._token_until = 0.0
        self.tokens_fetched = 0

    def _fresh_token(self) -> str:
        status, body, _ = http("PUT", self.endpoint + AWS_TOKEN_PATH, {AWS_TOKEN_TTL_HEADER: str(self.token_ttl_s)},
                               self.timeout_s)
        token = body.decode("ascii", "replace").strip() if status == 200 else ""
        if status != 200 or not token or len(token) > 1024:
            raise EndpointError(f"IMDSv2 token request answered HTTP {status}")
        self.tokens_fetched += 1
        self._token = token
        self._token_until = time.monotonic() + self.token_ttl_s * 0.9
        return token

    def _get(self, path: str) -> tuple[int, bytes]:
        token = self._token if self._token and time.monotonic() < self._token_until else self._fresh_token()
        status, body, _ = http("GET", self.endpoint + path, {AWS_TOKEN_HEADER: token}, self.timeout_s)
        if status == 401:  # expired or revoked: one new token, one retry
            token = self._fresh_token()
            status, body, _ = http("GET", self.endpoint + path, {AWS_TOKEN_HEADER: token}, self.timeout_s)
        return status, body

    def poll(self) -> list[Notice]:
        notices = []
        action = parse_aws_instance_action(*self._get(AWS_INSTANCE_ACTION))
        if action is not None:
            notices.append(action)
        if self.rebalance and action is None:
            recommendation = parse_aws_rebalance(*self._get(AWS_REBALANCE))
            if recommendation is not None:
                notices.append(recommendation)
        return notices


class GcpMetadata:
    """`instance/preempted` and `instance/maintenance-event`, with `Metadata-Flavor: Google` (the server
    refuses requests without it, and an answer without it did not come from the metadata server)."""

    cloud = "gcp"
    HEADERS = {"Metadata-Flavor": "Google"}

    def __init__(self, endpoint: str | None = None, *, timeout_s: float = 2.0, maintenance: bool = True) -> None:
        self.endpoint = (endpoint or default_endpoint("gcp")).rstrip("/")
        self.timeout_s = timeout_s
        self.maintenance = maintenance

    def _get(self, path: str) -> tuple[int, bytes]:
        status, body, headers = http("GET", self.endpoint + path, self.HEADERS, self.timeout_s)
        flavor = {k.lower(): v for k, v in headers.items()}.get("metadata-flavor")
        if status == 200 and flavor != "Google":
            raise MalformedAnswer("answer without Metadata-Flavor: Google (not the metadata server)")
        return status, body

    def poll(self) -> list[Notice]:
        notices = []
        preempted = parse_gcp_preempted(*self._get(GCP_PREEMPTED))
        if preempted is not None:
            notices.append(preempted)
        if self.maintenance:
            event = parse_gcp_maintenance(*self._get(GCP_MAINTENANCE))
            if event is not None:
                notices.append(event)
        return notices


class AzureScheduledEvents:
    """Scheduled Events (`Metadata: true`), filtered to this VM by the name the instance metadata gives
    (asked until it answers; until then every event counts — draining by mistake costs less than losing work)."""

    cloud = "azure"
    HEADERS = {"Metadata": "true"}

    def __init__(self, endpoint: str | None = None, *, timeout_s: float = 5.0, vm_name: str | None = None) -> None:
        self.endpoint = (endpoint or default_endpoint("azure")).rstrip("/")
        self.timeout_s = timeout_s
        self.vm_name = vm_name
        self._warned = False

    def _name(self) -> str | None:
        if self.vm_name is None:
            try:
                status, body, _ = http("GET", self.endpoint + AZURE_VM_NAME, self.HEADERS, self.timeout_s)
                name = body.decode("utf-8", "replace").strip() if status == 200 else ""
                if name and len(name) <= 128:
                    self.vm_name = name
                elif not self._warned:
                    log.warning("Azure instance metadata gave no VM name (HTTP %d): every event counts", status)
            except EndpointError as err:
                if not self._warned:
                    log.warning("Azure instance metadata unreachable (%s): every event counts", err)
            self._warned = True
        return self.vm_name

    def poll(self) -> list[Notice]:
        name = self._name()
        status, body, _ = http("GET", self.endpoint + AZURE_EVENTS, self.HEADERS, self.timeout_s)
        return parse_azure_scheduled_events(status, body, vm_name=name, now=time.time())


def source_for(cloud: str, endpoint: str | None = None, *, timeout_s: float | None = None) -> NoticeSource:
    """The notice source of a registered cloud (`Cloud.notice_source`)."""
    found = find(cloud)
    if found is None or found.notice_source_class() is None:
        raise ValueError(f"unknown cloud {cloud!r} ({', '.join(notice_clouds())})")
    return found.notice_source(endpoint, timeout_s=timeout_s)
