"""Specification of the one config model: YAML/JSON files, env and explicit overrides, clear errors, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etrid_ray.chain.errors import ConfigError
from etrid_ray.config import ProviderConfig, flat_aliases, load_config

SEED = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def error(**kw) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**{"env": {}, **kw})
    return str(info.value)


# --- defaults and files ---------------------------------------------------------------------------


def test_no_file_no_env_gives_the_defaults():
    c = load_config(None, env={})
    assert c == ProviderConfig()
    assert c.rpc_url == "http://127.0.0.1:9944" and c.websocket_url == "ws://127.0.0.1:9944"
    assert c.PRICE_PER_SECOND == 10**14
    assert c.allowed_handlers == ["echo", "sleep", "matmul", "embedding"]
    assert c.ENABLE_TEE is False and c.ENABLE_COMPLIANCE is False


def test_yaml_file_with_the_seeds_key_names(tmp_path):
    p = write(tmp_path, "provider.yaml", """
rpc_url: https://rpc.etrid.example
websocket_url: wss://rpc.etrid.example
PRICE_PER_SECOND: 250000000000000
ENABLE_TEE: true
ENABLE_COMPLIANCE: true
region: eu-west-1
gpus:
  count: 8
  model: H100
  vram_gb: 80
  tee: sev-snp
allowed_handlers: [echo, matmul]
""")
    c = load_config(p, env={})
    assert c.rpc_url == "https://rpc.etrid.example" and c.websocket_url == "wss://rpc.etrid.example"
    assert c.PRICE_PER_SECOND == 250_000_000_000_000
    assert c.ENABLE_TEE and c.ENABLE_COMPLIANCE
    assert (c.gpus.count, c.gpus.model, c.gpus.tee) == (8, "H100", "sev-snp")
    assert c.gpus.clock_speed_mhz == 1410  # unspecified nested fields keep their defaults
    assert c.allowed_handlers == ["echo", "matmul"] and c.region == "eu-west-1"


@pytest.mark.parametrize("suffix", [".yml", ".yaml"])
def test_both_yaml_suffixes_are_read_as_yaml(tmp_path, suffix):
    assert load_config(write(tmp_path, "c" + suffix, "pool: gpu-a\n"), env={}).pool == "gpu-a"


def test_json_file(tmp_path):
    p = write(tmp_path, "provider.json", json.dumps({"PRICE_PER_SECOND": 7, "gpus": {"count": 2}}))
    c = load_config(str(p), env={})
    assert c.PRICE_PER_SECOND == 7 and c.gpus.count == 2


def test_empty_yaml_file_gives_the_defaults(tmp_path):
    assert load_config(write(tmp_path, "empty.yaml", ""), env={}) == ProviderConfig()


def test_journal_path_expands_the_home_directory():
    c = load_config(env={}, overrides={"journal_path": "~/j.sqlite"})
    assert c.journal_file == Path("~/j.sqlite").expanduser()


def test_blob_store_defaults_to_the_rpc_url():
    assert load_config(env={}).blob_store_url == "http://127.0.0.1:9944"
    assert load_config(env={}, overrides={"blob_store": "file:///tmp/b"}).blob_store_url == "file:///tmp/b"


# --- environment and overrides --------------------------------------------------------------------


def test_etrid_prefixed_env_var_overrides_the_file(tmp_path):
    p = write(tmp_path, "c.yaml", "PRICE_PER_SECOND: 1\nregion: us-east-1\n")
    c = load_config(p, env={"ETRID_PRICE_PER_SECOND": "5", "ETRID_REGION": "eu-west-1"})
    assert c.PRICE_PER_SECOND == 5 and c.region == "eu-west-1"


def test_the_seeds_bare_names_are_read_from_the_env():
    c = load_config(env={"PRICE_PER_SECOND": "42", "ENABLE_TEE": "true", "ENABLE_COMPLIANCE": "1",
                         "RPC_URL": "http://node:9933", "WEBSOCKET_URL": "ws://node:9944"})
    assert c.PRICE_PER_SECOND == 42 and c.ENABLE_TEE and c.ENABLE_COMPLIANCE
    assert c.rpc_url == "http://node:9933" and c.websocket_url == "ws://node:9944"


def test_other_bare_env_names_are_not_read():
    assert load_config(env={"REGION": "eu-west-1", "POOL": "x", "HOME": "/root"}) == ProviderConfig()


def test_double_underscore_reaches_nested_fields(tmp_path):
    p = write(tmp_path, "c.yaml", "gpus:\n  count: 8\n  model: H100\n")
    c = load_config(p, env={"ETRID_GPUS__COUNT": "2", "ETRID_GPUS__VRAM_GB": "40"})
    assert (c.gpus.count, c.gpus.vram_gb, c.gpus.model) == (2, 40, "H100")  # merged, not replaced


def test_env_values_are_json_where_they_parse():
    c = load_config(env={"ETRID_ALLOWED_HANDLERS": '["echo"]', "ETRID_HEARTBEAT_INTERVAL_S": "2.5",
                         "ETRID_BLOB_STORE": "s3://bucket/prefix"})
    assert c.allowed_handlers == ["echo"] and c.heartbeat_interval_s == 2.5
    assert c.blob_store == "s3://bucket/prefix"


def test_unrelated_etrid_env_vars_are_ignored():
    assert load_config(env={"ETRID_SOMETHING": "x", "ETRID_SEED": SEED}) == ProviderConfig()


def test_the_websocket_url_has_one_canonical_variable_and_accepts_the_alias():
    """ETRID_WEBSOCKET_URL (ETRID_<KEY>) is the name; ETRID_WS_URL, which the CLI's --url has always read, is
    accepted too, and loses to the canonical name (and to the seed's WEBSOCKET_URL) when both are set."""
    assert load_config(env={"ETRID_WS_URL": "ws://alias:1"}).websocket_url == "ws://alias:1"
    both = {"ETRID_WS_URL": "ws://alias:1", "ETRID_WEBSOCKET_URL": "ws://canonical:2"}
    assert load_config(env=both).chain.websocket_url == "ws://canonical:2"
    assert load_config(env={"ETRID_WS_URL": "ws://alias:1", "WEBSOCKET_URL": "ws://seed:3"}).websocket_url == \
        "ws://seed:3"
    assert load_config(env={"ETRID_WS_URL": ""}) == ProviderConfig()  # empty: unset
    assert "websocket_url:" in error(env={"ETRID_WS_URL": "localhost:1"})


# --- sections and the alias layer -----------------------------------------------------------------


def test_the_config_is_in_sections_and_the_seeds_flat_names_map_onto_them(tmp_path):
    c = ProviderConfig()
    assert set(ProviderConfig.model_fields) == {"chain", "provider", "scaling", "clouds", "tee", "compliance",
                                                "telemetry", "kuberay"}
    assert (c.chain.rpc_url, c.provider.price_per_second, c.scaling.idle_timeout_s, c.clouds.aws.region,
            c.tee.enabled, c.compliance.enabled, c.telemetry.metrics_port) == (
        "http://127.0.0.1:9944", 10**14, 300.0, "us-east-1", False, False, 9091)
    flat = load_config(write(tmp_path, "flat.yaml", "PRICE_PER_SECOND: 7\nENABLE_TEE: true\ntee_region: westeurope\n"
                                                    "aws_region: eu-west-1\nidle_timeout_s: 60\n"), env={})
    nested = load_config(write(tmp_path, "nested.yaml", "provider: {price_per_second: 7}\n"
                                                        "tee: {enabled: true, region: westeurope}\n"
                                                        "clouds: {aws: {region: eu-west-1}}\n"
                                                        "scaling: {idle_timeout_s: 60}\n"), env={})
    assert flat == nested
    assert (flat.PRICE_PER_SECOND, flat.ENABLE_TEE, flat.tee_region, flat.aws_region) == (7, True, "westeurope",
                                                                                           "eu-west-1")
    # a later source wins whichever spelling either used
    c = load_config(write(tmp_path, "f.yaml", "aws_region: eu-west-1\n"), env={"ETRID_CLOUDS__AWS__REGION": "x-1"})
    assert c.clouds.aws.region == "x-1"
    c = load_config(write(tmp_path, "g.yaml", "clouds: {aws: {region: eu-west-1}}\n"), env={"AWS_REGION": "x-2"})
    assert c.clouds.aws.region == "x-2"
    assert ProviderConfig(idle_timeout_s=5).model_copy(update={"aws_region": "y"}).scaling.idle_timeout_s == 5
    assert ProviderConfig().model_copy(update={"scaling": {"idle_timeout_s": 9}}).idle_timeout_s == 9
    assert load_config(env={}, overrides=ProviderConfig(stake_edsc=200).model_dump()).stake_edsc == 200


def test_errors_name_the_key_as_it_was_written(tmp_path):
    assert "aws_max_nodes: Input should be greater than or equal to 0" in error(overrides={"aws_max_nodes": -1})
    assert "clouds.aws.max_nodes: Input" in error(overrides={"clouds": {"aws": {"max_nodes": -1}}})
    assert "scaling.idle_timout_s: unknown setting: did you mean idle_timeout_s?" in error(
        overrides={"scaling": {"idle_timout_s": 1}})
    assert "clouds.lambda: remove it (neither a setting nor a registered cloud: local, aws, gcp, azure)" in error(
        overrides={"clouds": {"lambda": {}}})
    assert "ENABLE_TEE: Input should be a valid boolean" in error(env={"ENABLE_TEE": "maybe"})


def test_settings_other_modules_read_from_the_env_come_through_the_config():
    from etrid_ray.config import env_setting, section_from_env

    t = section_from_env("telemetry", {"ETRID_METRICS_PORT": "0", "ETRID_LOG_FORMAT": "JSON"})
    assert (t.metrics_host, t.metrics_port, t.log_format) == ("127.0.0.1", 0, "json")
    c = section_from_env("compliance", {"ETRID_AUDIT_LOG": "/tmp/a.jsonl", "ETRID_AUDIT_FSYNC": "0"})
    assert (c.audit_log, c.audit_fsync) == (Path("/tmp/a.jsonl"), False)
    assert section_from_env("tee", {"ETRID_TEE_ROOT": "/fake"}).root == Path("/fake")
    assert section_from_env("clouds", {"AZURE_SUBSCRIPTION_ID": "sub"}).azure.subscription_id == "sub"
    assert load_config(env={"AZURE_SUBSCRIPTION_ID": "sub", "ETRID_AZURE_SUBSCRIPTION_ID": "mine"}
                       ).azure_subscription_id == "mine"
    with pytest.raises(ConfigError, match="ETRID_METRICS_PORT: Input should be a valid integer"):
        section_from_env("telemetry", {"ETRID_METRICS_PORT": "nine"})
    assert env_setting("audit_log", {"ETRID_AUDIT_LOG": "/a"}) == "/a" and env_setting("audit_log", {}) is None
    assert env_setting("websocket_url", {"ETRID_WS_URL": "ws://x:1"}) == "ws://x:1"


def test_explicit_overrides_beat_env_and_file(tmp_path):
    p = write(tmp_path, "c.json", json.dumps({"PRICE_PER_SECOND": 1, "gpus": {"count": 8, "model": "H100"}}))
    c = load_config(p, env={"ETRID_PRICE_PER_SECOND": "2", "ETRID_GPUS__COUNT": "4"},
                    overrides={"PRICE_PER_SECOND": 3, "gpus": {"count": 1}})
    assert c.PRICE_PER_SECOND == 3
    assert (c.gpus.count, c.gpus.model) == (1, "H100")


def test_os_environ_is_read_when_no_env_is_given(monkeypatch):
    monkeypatch.setenv("ETRID_PRICE_PER_SECOND", "99")
    assert load_config().PRICE_PER_SECOND == 99


# --- secrets --------------------------------------------------------------------------------------


def test_the_seed_phrase_is_never_a_config_field():
    c = load_config(env={"ETRID_SEED": SEED, "SEED": SEED})
    assert SEED not in c.model_dump_json() and SEED not in repr(c)
    assert c.seed_env == "ETRID_SEED"   # only the *name* of the variable that holds it
    assert not any("seed" in name and name not in ("seed_env", "seed_file") for name in flat_aliases())


def test_the_seed_env_name_and_seed_file_are_configurable():
    c = load_config(env={"ETRID_SEED_ENV": "MY_SEED", "ETRID_SEED_FILE": "/run/secrets/seed"})
    assert c.seed_env == "MY_SEED" and c.seed_file == Path("/run/secrets/seed")


def test_a_seed_in_the_config_file_is_refused_without_echoing_it(tmp_path):
    msg = error(path=write(tmp_path, "c.yaml", f"seed: {SEED}\n"))
    assert "seed: remove it (the key is never a setting" in msg
    assert SEED not in msg


def test_a_secret_pasted_into_a_url_field_is_not_echoed_in_the_error():
    msg = error(overrides={"rpc_url": SEED})
    assert "rpc_url" in msg and SEED not in msg


# --- errors name the key and the fix --------------------------------------------------------------


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nope.yaml"
    msg = error(path=missing)
    assert str(missing) in msg and "does not exist" in msg and "--config" in msg


def test_unknown_key_is_named_with_the_fix(tmp_path):
    msg = error(path=write(tmp_path, "c.yaml", "price_per_secnd: 5\n"))
    assert "price_per_secnd: unknown setting: did you mean PRICE_PER_SECOND?" in msg
    assert "flux_capacitor: remove it (unknown setting)" in error(path=write(tmp_path, "d.yaml", "flux_capacitor: 1\n"))


def test_unknown_nested_key_is_named_by_its_path(tmp_path):
    msg = error(path=write(tmp_path, "c.yaml", "gpus:\n  colour: green\n"))
    assert "gpus.colour: remove it (unknown setting)" in msg


def test_unknown_nested_env_key_is_named_too():
    assert "gpus.bogus: remove it" in error(env={"ETRID_GPUS__BOGUS": "1"})


@pytest.mark.parametrize("key, value, fix", [
    ("rpc_url", "ws://127.0.0.1:9944", "must start with http:// or https://"),
    ("rpc_url", "127.0.0.1:9944", "must start with http:// or https://"),
    ("websocket_url", "http://127.0.0.1:9944", "must start with ws:// or wss://"),
])
def test_bad_url_scheme_names_the_key_and_the_schemes_allowed(key, value, fix):
    msg = error(overrides={key: value})
    assert f"{key}:" in msg and fix in msg


def test_bad_url_from_the_env_names_the_key():
    msg = error(env={"ETRID_WEBSOCKET_URL": "localhost:9944"})
    assert "websocket_url:" in msg and "ws://" in msg


def test_every_problem_is_listed_at_once():
    msg = error(overrides={"rpc_url": "x", "websocket_url": "y", "stake_edsc": 5, "nope": 1})
    for key in ("rpc_url:", "websocket_url:", "stake_edsc:", "nope: remove it"):
        assert key in msg


@pytest.mark.parametrize("overrides, key", [
    ({"PRICE_PER_SECOND": -1}, "PRICE_PER_SECOND"),
    ({"stake_edsc": 99}, "stake_edsc"),
    ({"gpus": {"count": -1}}, "gpus.count"),
    ({"claim_batch": 0}, "claim_batch"),
    ({"heartbeat_interval_s": 0}, "heartbeat_interval_s"),
    ({"ENABLE_TEE": "maybe"}, "ENABLE_TEE"),
])
def test_out_of_range_values_name_the_key(overrides, key):
    assert f"{key}:" in error(overrides=overrides)


def test_invalid_yaml_names_the_file(tmp_path):
    p = write(tmp_path, "c.yaml", "gpus: [unclosed\n")
    msg = error(path=p)
    assert str(p) in msg and "not valid yaml" in msg


def test_invalid_json_names_the_file(tmp_path):
    p = write(tmp_path, "c.json", "{not json")
    msg = error(path=p)
    assert str(p) in msg and "not valid json" in msg


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path, text):
    assert "must hold a mapping" in error(path=write(tmp_path, "c.yaml", text))


def test_the_pure_policies_receive_the_scaling_section_alone():
    from etrid_ray.config import ScalingSettings
    from etrid_ray.scaling.tick import TickRequest
    from etrid_ray.sim import SimSettings, build_scenario

    request = TickRequest(snapshot=None, config=ProviderConfig(idle_timeout_s=7))  # type: ignore[arg-type]
    assert type(request.config) is ScalingSettings and request.config.idle_timeout_s == 7
    scenario = build_scenario(SimSettings(base_config=ProviderConfig(idle_timeout_s=7), edsc_usd=0.5))
    assert type(scenario.scaling) is ScalingSettings and not hasattr(scenario, "config")
    assert (scenario.scaling.idle_timeout_s, scenario.scaling.edsc_usd) == (7, 0.5)


def test_the_entry_points_configure_the_audit_log_from_the_config(tmp_path, monkeypatch):
    from etrid_ray.security import audit

    monkeypatch.delenv("ETRID_AUDIT_LOG", raising=False)
    try:
        assert audit.configure_for(ProviderConfig()) is None  # no compliance, no log named: left alone
        on = ProviderConfig(ENABLE_COMPLIANCE=True, journal_path=tmp_path / "j.sqlite")
        assert audit.configure_for(on).path == tmp_path / "audit.jsonl"  # beside the journal
        named = ProviderConfig(audit_log=tmp_path / "named.jsonl", audit_fsync=False)
        log = audit.configure_for(named)
        assert log.path == tmp_path / "named.jsonl" and audit.default_log() is log
        monkeypatch.setenv("ETRID_AUDIT_LOG", str(tmp_path / "env.jsonl"))  # this process's env on top
        assert audit.configure_for(named).path == tmp_path / "env.jsonl"
    finally:
        audit.configure(None)
