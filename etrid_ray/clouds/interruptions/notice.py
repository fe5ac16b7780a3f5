"""What each cloud's metadata endpoint says about an upcoming interruption, as one `Notice`.

Pure functions of an HTTP status and body (and, where the answer carries no time, the moment it was
read): no I/O, so every answer — none, a notice, garbage — is tested on its own. An answer that cannot
be understood raises `MalformedAnswer` (the watcher logs it and polls again); nothing else escapes.

Kinds, the same on every cloud:

- `terminate`: the instance is being reclaimed or removed (AWS `instance-action` terminate/stop/
  hibernate, GCP `preempted`, Azure `Preempt`/`Terminate`);
- `maintenance`: the host goes down for maintenance and this instance with it (GCP
  `TERMINATE_ON_HOST_MAINTENANCE`, Azure `Reboot`/`Redeploy`);
- `rebalance`: AWS's rebalance recommendation — elevated risk, no deadline yet;
- `migrate`, `freeze`: the instance survives (GCP live migration, Azure `Freeze` pauses of seconds).

`deadline` is Unix seconds when the endpoint gives a time; None when it does not (GCP never does; the
watcher then applies the cloud's documented notice length, `Cloud.notice_s` in the cloud registry, from
when it first saw the notice).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

KINDS = ("terminate", "maintenance", "rebalance", "migrate", "freeze")
DRAIN_KINDS = ("terminate", "maintenance", "rebalance")  # the instance (or, for rebalance, likely) goes away
MAX_BODY = 64 * 1024  # a metadata answer is tiny; anything larger is not one


class MalformedAnswer(ValueError):
    """The endpoint answered, but not in a form this cloud documents."""


@dataclass(frozen=True)
class Notice:
    cloud: str
    kind: str
    deadline: float | None  # Unix seconds; None: the endpoint gave no time
    detail: str = ""        # the cloud's own words: action, event type, notice time
    event_id: str = ""      # Azure's EventId (one notice per scheduled event)

    @property
    def key(self) -> tuple[str, str, str]:
        """Identifies one announcement across polls (its deadline may be filled in later)."""
        return (self.cloud, self.kind, self.event_id or self.detail)

    def describe(self) -> str:
        when = "no deadline" if self.deadline is None else f"deadline {iso(self.deadline)}"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.cloud} {self.kind}{extra}, {when}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(body: bytes | str) -> str:
    if isinstance(body, bytes | bytearray):
        if len(body) > MAX_BODY:
            raise MalformedAnswer(f"answer of {len(body)} bytes")
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError as err:
            raise MalformedAnswer("answer is not UTF-8") from err
    if len(body) > MAX_BODY:
        raise MalformedAnswer(f"answer of {len(body)} characters")
    return body


def _json(body: bytes | str) -> Any:
    try:
        return json.loads(_text(body))
    except (json.JSONDecodeError, RecursionError) as err:
        raise MalformedAnswer(f"not JSON: {str(err)[:60]}") from err


def _unexpected(status: int) -> MalformedAnswer:
    return MalformedAnswer(f"HTTP {status}")


def parse_iso8601(value: Any) -> float | None:
    """AWS's `2017-09-18T08:22:00Z` (any ISO 8601 with a zone) → Unix seconds; None when unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)  # IMDS times are UTC
    try:
        return stamp.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def parse_rfc1123(value: Any) -> float | None:
    """Azure's `Mon, 19 Sep 2016 18:29:47 GMT` → Unix seconds; None when empty or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        stamp = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    try:
        return stamp.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------- AWS

AWS_ACTIONS = ("terminate", "stop", "hibernate")


def parse_aws_instance_action(status: int, body: bytes | str) -> Notice | None:
    """`GET /latest/meta-data/spot/instance-action`: 404 while none is scheduled; 200 with
    `{"action": "terminate"|"stop"|"hibernate", "time": "…Z"}` two minutes ahead. An action this
    code does not know is still an interruption (the endpoint exists only for one)."""
    if status == 404:
        return None
    if status != 200:
        raise _unexpected(status)
    doc = _json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("action"), str) or not doc["action"].strip():
        raise MalformedAnswer("instance-action without an action")
    action = doc["action"].strip()
    return Notice("aws", "terminate", parse_iso8601(doc.get("time")), detail=action[:40])


def parse_aws_rebalance(status: int, body: bytes | str) -> Notice | None:
    """`GET /latest/meta-data/events/recommendations/rebalance`: 404 while none; 200 with
    `{"noticeTime": "…Z"}` (when it was raised: a recommendation has no deadline)."""
    if status == 404:
        return None
    if status != 200:
        raise _unexpected(status)
    doc = _json(body)
    if not isinstance(doc, dict) or "noticeTime" not in doc:
        raise MalformedAnswer("rebalance recommendation without noticeTime")
    raised = parse_iso8601(doc.get("noticeTime"))
    return Notice("aws", "rebalance", None, detail=f"raised {iso(raised)}" if raised is not None else "raised")


# --------------------------------------------------------------------------------------------- GCP

GCP_MAINTENANCE = {"MIGRATE_ON_HOST_MAINTENANCE": "migrate", "TERMINATE_ON_HOST_MAINTENANCE": "maintenance"}


def parse_gcp_preempted(status: int, body: bytes | str) -> Notice | None:
    """`GET /computeMetadata/v1/instance/preempted`: `FALSE`, or `TRUE` once the 30 s preemption notice
    has begun (no time given)."""
    if status != 200:
        raise _unexpected(status)
    value = _text(body).strip()
    if value == "FALSE":
        return None
    if value == "TRUE":
        return Notice("gcp", "terminate", None, detail="preempted")
    raise MalformedAnswer(f"preempted is neither TRUE nor FALSE: {value[:20]!r}")


def parse_gcp_maintenance(status: int, body: bytes | str) -> Notice | None:
    """`GET /computeMetadata/v1/instance/maintenance-event`: `NONE`, `MIGRATE_ON_HOST_MAINTENANCE`
    (live migration: the VM survives) or `TERMINATE_ON_HOST_MAINTENANCE` (GPU VMs: it stops)."""
    if status != 200:
        raise _unexpected(status)
    value = _text(body).strip()
    if value == "NONE":
        return None
    kind = GCP_MAINTENANCE.get(value)
    if kind is None:
        raise MalformedAnswer(f"unknown maintenance event {value[:40]!r}")
    return Notice("gcp", kind, None, detail=value)


# ------------------------------------------------------------------------------------------- Azure

AZURE_KINDS = {"Preempt": "terminate", "Terminate": "terminate", "Reboot": "maintenance",
               "Redeploy": "maintenance", "Freeze": "freeze"}


def parse_azure_scheduled_events(status: int, body: bytes | str, *, vm_name: str | None = None,
                                 now: float) -> list[Notice]:
    """`GET /metadata/scheduledevents?api-version=2020-07-01`: `{"DocumentIncarnation": n, "Events": [
    {"EventId", "EventType", "EventStatus", "ResourceType", "Resources": [vm names], "NotBefore"}]}`.

    Only events naming `vm_name` count (the document covers every VM of an availability set or scale
    set); with no name known, every event does. `NotBefore` (RFC 1123) is the deadline; a `Started`
    event without one is happening now. A malformed event is skipped, an unknown type ignored."""
    if status != 200:
        raise _unexpected(status)
    doc = _json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("Events"), list):
        raise MalformedAnswer("scheduled events without an Events list")
    notices = []
    for event in doc["Events"]:
        if not isinstance(event, dict):
            continue
        kind = AZURE_KINDS.get(event.get("EventType")) if isinstance(event.get("EventType"), str) else None
        if kind is None or event.get("EventStatus") not in ("Scheduled", "Started"):
            continue
        resources = event.get("Resources")
        if vm_name is not None and isinstance(resources, list) and resources and vm_name not in resources:
            continue  # another VM's event
        deadline = parse_rfc1123(event.get("NotBefore"))
        if deadline is None and event.get("EventStatus") == "Started":
            deadline = now
        event_id = event.get("EventId") if isinstance(event.get("EventId"), str) else ""
        notices.append(Notice("azure", kind, deadline, detail=event["EventType"], event_id=event_id[:80]))
    return notices
