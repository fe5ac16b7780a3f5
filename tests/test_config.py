"""Specification of the one config model: YAML/JSON files, env and explicit overrides, clear errors, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etrid_ray.chain.errors import ConfigError
from etrid_ray.config import ProviderConfig, load_config

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
    assert load_config(env={"ETRID_WS_URL": "ws://elsewhere:1", "ETRID_SOMETHING": "x"}) == ProviderConfig()


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
    assert not any("seed" in name and name not in ("seed_env", "seed_file") for name in ProviderConfig.model_fields)


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
