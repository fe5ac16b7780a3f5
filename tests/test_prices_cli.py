"""`etrid-ray prices`: the catalog table offline, and live rows from moto (AWS) and recorded GCP
answers when the config asks for live prices; fallbacks are shown, never hidden."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from etrid_ray.cli import main
from etrid_ray.durations import format_duration
from etrid_ray.prices import default_catalog
from tests.clouds_support import fake_aws_env, gcp_service_account_file, moto_server, recorded, reply
from tests.helpers.recorded_api import RecordedApi

GCP_PROJECT = "etrid-test"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["prices", *args])
    return result.exit_code, result.output


def rows_by_pool(output: str) -> dict[str, dict]:
    return {r["pool"]: r for r in json.loads(output)}


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_aws_env(monkeypatch, tmp_path)  # even if something asked AWS, nothing would leave loopback
    for var in list(__import__("os").environ):
        if var.startswith("ETRID_"):
            monkeypatch.delenv(var)


def test_catalog_table_lists_every_pool_with_source_and_age(offline):
    code, out = run()
    assert code == 0, out
    for text in ("pool", "$/node-h", "$/GPU-h", "spot discount", "interruption", "source", "age",
                 "local-gpu", "aws-spot-a100", "gcp-spot-a100", "azure-spot-a100", "catalog", "10-15%"):
        assert text in out, text


def test_catalog_json_rows(offline):
    code, out = run("--json")
    assert code == 0, out
    rows = rows_by_pool(out)
    aws = rows["aws-spot-a100"]
    assert aws["source"] == "catalog" and aws["usd_per_node_hour"] == pytest.approx(2.4655)
    assert aws["usd_per_gpu_hour"] == pytest.approx(2.4655 / 8)
    assert aws["spot_discount"] == pytest.approx(1 - 2.4655 / aws["ondemand_usd_per_hour"])
    assert (aws["interruption_bucket"], aws["interruption_rate"]) == ("10-15%", 0.125)
    assert aws["as_of"].startswith("2026-11-01") and aws["age_s"] > 0
    assert aws["quota_headroom_nodes"] is None  # not asked: unknown
    assert rows["gcp-spot-a100"]["usd_per_node_hour"] == pytest.approx(21.08704)  # host + 8 GPUs, summed
    local = rows["local-gpu"]
    assert local["source"] == "local power" and local["usd_per_gpu_hour"] == pytest.approx(0.048)  # 400 W × 0.12


def test_a_pool_over_its_max_price_says_so(offline, tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"azure_spot_max_price": 1.0}))
    code, out = run("--config", str(cfg), "--json")
    assert code == 0 and rows_by_pool(out)["azure-spot-a100"]["notes"][0] == "over max spot price 1: never grows"


@pytest.fixture()
def live_env(offline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, RecordedApi, Path]]:
    with moto_server() as moto, recorded("gcp/europe_west4.json") as gcp:
        key = gcp_service_account_file(tmp_path / "sa.json", f"{gcp.url}/token", GCP_PROJECT)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        cfg = tmp_path / "live.yaml"
        cfg.write_text(yaml.safe_dump({
            "live_prices": True, "aws_endpoint_url": moto, "gcp_project": GCP_PROJECT, "gcp_api_endpoint": gcp.url,
            "azure_subscription_id": "00000000-0000-0000-0000-0000000e7a1d", "azure_base_url": "https://127.0.0.1:9",
            "cloud_api_timeout_s": 30}))
        yield moto, gcp, cfg


def test_live_rows_from_moto_and_the_recorded_gcp_api(live_env):
    _, gcp, cfg = live_env
    code, out = run("--config", str(cfg), "--json")
    assert code == 0, out
    rows = rows_by_pool(out)
    aws = rows["aws-spot-a100"]
    assert aws["source"] == "aws-api" and aws["usd_per_node_hour"] == 0.00001 and aws["zone"] == "us-east-1a"
    assert aws["age_s"] < 60 and aws["ondemand_usd_per_hour"] == default_catalog().offers(
        "aws", "p4d.24xlarge", "us-east-1")[0].ondemand_usd_per_hour
    assert any("spot placement score unavailable" in n for n in aws["notes"])
    g = rows["gcp-spot-a100"]
    assert g["source"] == "catalog" and g["quota_headroom_nodes"] == 3 and g["zone"] == "europe-west4-a"
    assert gcp.requests and not [r for r in gcp.requests if r.path == "/token"]
    az = rows["azure-spot-a100"]  # no azure-identity here: no credential, so nothing is sent; catalog shown
    assert az["source"] == "catalog" and any("live azure market unavailable" in n for n in az["notes"])


def test_live_table_shows_sources_side_by_side(live_env):
    code, out = run("--config", str(live_env[2]))
    assert code == 0, out
    assert "aws-api" in out and "catalog" in out and "quota PREEMPTIBLE_NVIDIA_A100_80GB_GPUS" in out


def test_catalog_flag_overrides_live_prices(live_env):
    _, gcp, cfg = live_env
    code, out = run("--config", str(cfg), "--catalog", "--json")
    assert code == 0 and {r["source"] for r in json.loads(out) if r["cloud"] != "local"} == {"catalog"}
    assert not gcp.requests


def test_a_failing_cloud_falls_back_to_the_catalog_and_says_why(offline, tmp_path: Path):
    with recorded() as down:
        down.add("POST", "/", reply("aws/ec2.json", "throttle_503"))
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"live_prices": True, "aws_endpoint_url": down.url, "gcp_enabled": False,
                                       "azure_enabled": False}))
        code, out = run("--config", str(cfg), "--json")
    assert code == 0, out
    aws = rows_by_pool(out)["aws-spot-a100"]
    assert aws["source"] == "catalog" and aws["usd_per_node_hour"] == pytest.approx(2.4655)
    assert any("live aws market unavailable" in n and "RequestLimitExceeded" in n for n in aws["notes"])


def test_a_bad_config_is_one_clear_line(offline, tmp_path: Path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"price_max_age_s": -1}))
    code, out = run("--config", str(cfg))
    assert code == 2 and "price_max_age_s" in out and "Traceback" not in out


@pytest.mark.parametrize("seconds, text", [(None, "-"), (5, "5 s"), (600, "10 min"), (5400, "90 min"),
                                           (7200, "2.0 h"), (28 * 86_400, "28 d")])
def test_age_format(seconds, text):
    assert format_duration(seconds) == text


def test_one_duration_format_serves_the_status_view_and_the_simulator():
    assert [format_duration(v, compact=True, none="—") for v in (None, 5, 600, 7200, 28 * 86_400)] == \
        ["—", "5s", "10m", "2.0h", "28d"]
    assert format_duration(3 * 86_400, days=False) == "72.0 h"  # the simulator's waits stay in hours
