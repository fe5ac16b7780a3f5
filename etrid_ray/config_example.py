"""A complete, commented `provider.yaml`, written from `ProviderConfig` itself.

The README's example and `etrid-ray config example` print this, so the example can never miss a key
or show a stale default: every field, its default and its description come from the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from etrid_ray.clouds import registry
from etrid_ray.config import CloudsSettings, ProviderConfig
from etrid_ray.pools import Pool

WIDTH = 110
HEADER = """\
# provider.yaml — every setting of `etrid-ray provider run`, with its default (`etrid-ray config example`).
# Keep only what you change. Settings are in sections; the seed's flat names are accepted too, in the file and
# as environment variables (rpc_url, PRICE_PER_SECOND, aws_region, local_nodes, ENABLE_TEE, idle_timeout_s, …:
# a section's key by its own name, a cloud's as <cloud>_<key>). Environment variables override the file:
# ETRID_<KEY> (ETRID_IDLE_TIMEOUT_S=60, ETRID_GPUS__COUNT=2, ETRID_CLOUDS__AWS__REGION=eu-west-1) and the seed's
# own names (PRICE_PER_SECOND, AWS_ENABLED, …). Secrets are never settings here: the key is read from the
# variable `seed_env` names or the file `seed_file` names; cloud keys from the clouds' usual variables.
"""
# A pool entry, shown commented out: `pools` is empty by default (the seed's keys above describe the pools).
POOL_EXAMPLE = Pool(name="aws-spot-h100", kind="aws", accelerator="H100", gpus_per_node=8, region="us-east-1",
                    instance_type="p5.48xlarge", max_nodes=2, startup_s=240)


def _scalar(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").strip()


def _comment(text: str, indent: str) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(indent) + 2 + len(line) + 1 + len(word) > WIDTH:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return [f"{indent}# {chunk}" for chunk in lines]


def _entries(model: type[BaseModel], values: BaseModel) -> list[tuple[str, str | None, Any]]:
    """(key, description, value) of a section: its fields, and for `clouds` first each registered cloud's section."""
    out: list[tuple[str, str | None, Any]] = []
    if isinstance(values, CloudsSettings):
        for cloud in registry.clouds():
            doc = " ".join((cloud.Settings.__doc__ or "").split()) or None
            out.append((cloud.name, doc, values.of(cloud.name)))
    out += [(name, field.description, getattr(values, name)) for name, field in model.model_fields.items()]
    return out


def _fields(model: type[BaseModel], values: BaseModel, indent: str = "") -> list[str]:
    out: list[str] = []
    for name, description, value in _entries(model, values):
        if description:
            out.extend(_comment(description, indent))
        if isinstance(value, BaseModel):
            out.append(f"{indent}{name}:")
            out.extend(_fields(type(value), value, indent + "  "))
        elif name == "pools":
            out.append(f"{indent}{name}: {_scalar(value)}")
            pool = json.loads(POOL_EXAMPLE.model_dump_json(exclude_defaults=True))
            out.append(f"{indent}#   e.g.")
            out.extend(f"{indent}#   {line}" for line in yaml.safe_dump([pool], sort_keys=False).splitlines())
            out.append("")
        else:
            out.append(f"{indent}{name}: {_scalar(value)}")
    return out


def example_yaml() -> str:
    """The whole example file; it loads back to the defaults (a test holds it to that)."""
    return HEADER + "\n" + "\n".join(_fields(ProviderConfig, ProviderConfig())) + "\n"


def undocumented_fields() -> list[str]:
    """Settings a user would see in the example without a word of what they do."""

    def walk(values: BaseModel, prefix: str) -> list[str]:
        missing = []
        for name, description, value in _entries(type(values), values):
            if not description:
                missing.append(prefix + name)
            if isinstance(value, BaseModel):
                missing += walk(value, f"{prefix}{name}.")
        return missing

    return walk(ProviderConfig(), "")
