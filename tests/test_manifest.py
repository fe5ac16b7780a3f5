"""Specification of the job manifest (v1): parsing, errors fit for the chain, canonical bytes, exported schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etrid_ray import manifest_schema_export
from etrid_ray.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestError,
    encode_manifest,
    manifest_json_schema,
    parse_manifest,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
H = "0x" + "ab" * 32
MAX_REASON = 128


def parse(obj: object) -> Manifest:
    return parse_manifest(json.dumps(obj).encode())


def reason(data: bytes) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data)
    return str(info.value)


# --- parsing -------------------------------------------------------------------------------------


def test_minimal_manifest_is_just_a_handler_and_everything_else_defaults():
    m = parse({"handler": "echo"})
    assert m.version == 1
    assert m.args == {} and m.inputs == []
    assert m.output.format == "json"
    assert m.resources.gpus == 1 and m.resources.min_vram_gb == 0
    assert m.resources.accelerator is None and m.resources.tee is None
    assert m.compliance.template is None and m.compliance.allowed_regions == []
    assert m.timeout_s is None


def test_full_manifest_round_trips_every_field():
    obj = {
        "version": 1, "handler": "embedding", "args": {"texts": ["a", "b"]},
        "inputs": [{"name": "texts", "hash": H, "size": 10}], "output": {"format": "bytes"},
        "resources": {"gpus": 0.5, "min_vram_gb": 16, "accelerator": "H100", "tee": "sev-snp"},
        "compliance": {"template": "GDPR", "allowed_regions": ["eu-west"]}, "timeout_s": 30.5,
    }
    m = parse(obj)
    assert m.model_dump(mode="json") == obj


def test_input_hash_is_normalised_to_lower_case():
    assert parse({"handler": "echo", "inputs": [{"name": "x", "hash": H.upper().replace("0X", "0x")}]}) \
        .inputs[0].hash == H


@pytest.mark.parametrize("obj, where", [
    ({}, "handler"),
    ({"handler": ""}, "handler"),
    ({"handler": "os.system"}, "handler"),            # import paths do not even parse
    ({"handler": "Echo"}, "handler"),
    ({"handler": "x" * 65}, "handler"),
    ({"handler": "echo", "version": 2}, "version"),
    ({"handler": "echo", "extra": 1}, "extra"),        # unknown fields are refused, not ignored
    ({"handler": "echo", "resources": {"gpu": 1}}, "resources.gpu"),
    ({"handler": "echo", "resources": {"gpus": -1}}, "resources.gpus"),
    ({"handler": "echo", "resources": {"gpus": 65}}, "resources.gpus"),
    ({"handler": "echo", "resources": {"tee": "trustme"}}, "resources.tee"),
    ({"handler": "echo", "compliance": {"template": "gdpr"}}, "compliance.template"),
    ({"handler": "echo", "inputs": [{"name": "x", "hash": "0x1234"}]}, "inputs.0.hash"),
    ({"handler": "echo", "inputs": [{"name": "x", "hash": "ab" * 32}]}, "inputs.0.hash"),
    ({"handler": "echo", "inputs": [{"name": "", "hash": H}]}, "inputs.0.name"),
    ({"handler": "echo", "inputs": [{"name": "x", "hash": H, "size": -1}]}, "inputs.0.size"),
    ({"handler": "echo", "inputs": [{"name": f"i{i}", "hash": H} for i in range(65)]}, "inputs"),
    ({"handler": "echo", "output": {"format": "xml"}}, "output.format"),
    ({"handler": "echo", "timeout_s": 0}, "timeout_s"),
    ({"handler": "echo", "args": []}, "args"),
])
def test_invalid_manifest_is_refused_with_the_offending_field_named(obj, where):
    msg = reason(json.dumps(obj).encode())
    assert msg.startswith(f"invalid manifest: {where}"), msg


# --- only what Ray can schedule: a manifest that parses is one the head can dispatch ----------------


@pytest.mark.parametrize("gpus", [0, 0.0001, 0.00015, 0.25, 1 / 3, 0.5, 1, 1.0, 2, 8.0, 64])
def test_gpus_may_be_zero_a_fraction_of_at_least_a_ray_unit_or_whole(gpus):
    assert parse({"handler": "echo", "resources": {"gpus": gpus}}).resources.gpus == gpus


@pytest.mark.parametrize(("gpus", "why"), [
    (1.5, "above 1, GPUs must be whole"), (2.25, "above 1, GPUs must be whole"), (63.9999, "above 1"),
    (0.00001, "at least 0.0001"), (5e-324, "at least 0.0001"), (0.0000999, "at least 0.0001"),
    (-1, "within 0..64"), (65, "within 0..64"), (True, "valid number"), ("1", "valid number"),
])
def test_gpus_ray_would_refuse_are_refused_when_parsing_with_the_field_named(gpus, why):
    msg = reason(json.dumps({"handler": "echo", "resources": {"gpus": gpus}}).encode())
    assert msg.startswith("invalid manifest: resources.gpus: ") and why in msg, msg


@pytest.mark.parametrize("text", ["Infinity", "-Infinity", "NaN", "1e300", "4294967296"])
def test_a_timeout_must_be_finite_and_no_longer_than_the_chain_can_hold(text):
    msg = reason(b'{"handler":"echo","timeout_s":' + text.encode() + b"}")
    assert msg.startswith("invalid manifest: timeout_s"), msg


def test_the_longest_timeout_the_chain_can_hold_is_accepted():
    assert parse({"handler": "echo", "timeout_s": 2**32 - 1}).timeout_s == 2**32 - 1


_gpus_values = (st.floats(-2, 70, allow_nan=False) | st.integers(-2, 70) | st.sampled_from([0.0001, 1.0, 1.5, 1e-5])
                | st.floats(0, 0.001))


@settings(max_examples=400, deadline=None)
@given(gpus=_gpus_values)
def test_the_parser_and_the_json_schema_agree_on_every_gpu_count(gpus):
    obj = {"handler": "echo", "resources": {"gpus": gpus}}
    schema_ok = jsonschema.Draft202012Validator(manifest_json_schema()).is_valid(obj)
    try:
        parse(obj)
    except ManifestError:
        parsed = False
    else:
        parsed = True
    assert parsed == schema_ok, (gpus, parsed, schema_ok)


@pytest.mark.parametrize("data, expected", [
    (b"", "malformed manifest JSON"),
    (b"{not json", "malformed manifest JSON"),
    (b"\xff\xfe\x00", "malformed manifest JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"echo"', "must be a JSON object"),
    (b"null", "must be a JSON object"),
])
def test_non_object_or_malformed_json_is_refused(data, expected):
    assert expected in reason(data)


def test_manifest_over_one_mebibyte_is_refused_before_parsing():
    data = b'{"handler":"echo","args":{"p":"' + b"x" * MAX_MANIFEST_BYTES + b'"}}'
    assert reason(data).startswith("manifest too large")


def test_deeply_nested_json_is_a_manifest_error_not_a_crash():
    # json.loads raises RecursionError here; a stranger's manifest must never take the head down
    assert "malformed manifest JSON" in reason(b"[" * 100_000)


def test_args_too_deep_to_re_encode_are_refused_at_parse_time():
    # The head re-encodes the manifest (model_dump_json) to dispatch it after claiming: it must not fail there.
    data = b'{"handler":"echo","args":{"a":' + b"[" * 400 + b"]" * 400 + b"}}"
    assert "nested too deeply" in reason(data)


def test_long_or_multibyte_field_names_are_cut_to_128_bytes_on_a_character_boundary():
    for key in ("k" * 500, "é" * 300, "😀" * 100):
        msg = reason(json.dumps({"handler": "echo", key: 1}, ensure_ascii=False).encode())
        assert len(msg.encode("utf-8")) <= MAX_REASON
        assert msg.startswith("invalid manifest: ")


def test_manifest_error_itself_never_exceeds_128_bytes():
    assert len(str(ManifestError("ü" * 1000)).encode()) <= MAX_REASON
    assert str(ManifestError("short")) == "short"


# The chain field holds at most 128 bytes: whatever a stranger uploads, the reason fits.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=200),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=150), kids, max_size=4),
    max_leaves=20,
)
_manifestish = st.fixed_dictionaries(
    {}, optional={"handler": st.text(max_size=80) | st.sampled_from(["echo", "matmul"]), "args": _json,
                  "inputs": _json, "resources": _json, "compliance": _json, "version": _json,
                  "timeout_s": _json, "output": _json},
).flatmap(lambda d: st.dictionaries(st.text(max_size=150), _json, max_size=2).map(lambda extra: {**extra, **d}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_fail_with_a_reason_of_at_most_128_bytes(data):
    try:
        parse_manifest(data)
    except ManifestError as err:
        assert 0 < len(str(err).encode("utf-8")) <= MAX_REASON


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_manifestish | _json)
def test_any_json_parses_or_fails_with_a_reason_of_at_most_128_bytes(obj):
    try:
        m = parse_manifest(json.dumps(obj, ensure_ascii=False).encode())
    except ManifestError as err:
        assert 0 < len(str(err).encode("utf-8")) <= MAX_REASON
    else:
        assert Manifest.model_validate_json(m.model_dump_json()) == m   # what the head dispatches re-parses


@settings(max_examples=200, deadline=None)
@given(key=st.text(min_size=1, max_size=300), where=st.sampled_from(["", "resources", "compliance", "output"]))
def test_stranger_chosen_field_names_never_push_the_reason_past_128_bytes(key, where):
    obj: dict = {"handler": "echo"}
    if where:
        obj[where] = {key: 1}
    elif key not in Manifest.model_fields:
        obj[key] = 1
    try:
        parse(obj)
    except ManifestError as err:
        assert len(str(err).encode("utf-8")) <= MAX_REASON


# --- canonical bytes -----------------------------------------------------------------------------


def test_encode_manifest_is_canonical_sorted_keys_no_spaces():
    a = encode_manifest({"handler": "echo", "args": {"b": 1, "a": 2}})
    b = encode_manifest({"args": {"a": 2, "b": 1}, "handler": "echo"})
    assert a == b == b'{"args":{"a":2,"b":1},"handler":"echo"}'


def test_equal_manifests_encode_to_equal_bytes_and_parse_back_equal():
    m1 = parse({"handler": "echo", "args": {"y": 1, "x": [1, 2]}, "resources": {"gpus": 1}})
    m2 = parse({"resources": {}, "args": {"x": [1, 2], "y": 1}, "handler": "echo"})
    assert encode_manifest(m1) == encode_manifest(m2)
    assert parse_manifest(encode_manifest(m1)) == m1


def test_encoded_model_leaves_out_none_fields():
    data = encode_manifest(parse({"handler": "echo"}))
    assert b"null" not in data and b"timeout_s" not in data


@settings(max_examples=100, deadline=None)
@given(args=st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=5),
       gpus=st.integers(0, 64), vram=st.integers(0, 4096))
def test_encode_then_parse_is_identity(args, gpus, vram):
    m = Manifest(handler="matmul", args=args, resources={"gpus": gpus, "min_vram_gb": vram})
    assert parse_manifest(encode_manifest(m)) == m


# --- exported JSON Schema and docs ---------------------------------------------------------------


def test_committed_json_schema_matches_the_model():
    committed = json.loads((DOCS / "manifest.schema.json").read_text(encoding="utf-8"))
    assert committed == manifest_json_schema(), \
        "docs/manifest.schema.json is stale: run python -m etrid_ray.manifest_schema_export"


def test_committed_json_schema_file_is_byte_for_byte_what_the_exporter_writes():
    assert (DOCS / "manifest.schema.json").read_text(encoding="utf-8") == manifest_schema_export.render()
    assert manifest_schema_export.main(["--check", str(DOCS / "manifest.schema.json")]) == 0


def test_exporter_writes_the_schema_and_check_detects_drift(tmp_path):
    target = tmp_path / "schema.json"
    assert manifest_schema_export.main(["--check", str(target)]) == 1      # missing
    assert manifest_schema_export.main([str(target)]) == 0
    assert json.loads(target.read_text()) == manifest_json_schema()
    assert manifest_schema_export.main(["--check", str(target)]) == 0
    target.write_text(target.read_text().replace('"maxLength": 64', '"maxLength": 65', 1))
    assert manifest_schema_export.main(["--check", str(target)]) == 1


def test_schema_is_versioned_and_identified():
    schema = manifest_json_schema()
    assert schema["$id"].endswith("manifest-v1.json")
    assert schema["properties"]["version"]["const"] == 1
    assert schema["required"] == ["handler"]
    jsonschema.Draft202012Validator.check_schema(schema)


def _doc_examples() -> list[dict]:
    text = (DOCS / "manifest.md").read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def test_docs_explain_every_field_and_their_example_is_a_valid_manifest():
    text = (DOCS / "manifest.md").read_text(encoding="utf-8")
    examples = _doc_examples()
    assert examples
    for example in examples:
        parse(example)
        jsonschema.validate(example, manifest_json_schema())
    for field in ("version", "handler", "args", "inputs", "output", "resources", "compliance", "timeout_s"):
        assert f"`{field}" in text
    for name, sub in (("resources", Manifest.model_fields["resources"].annotation),
                      ("compliance", Manifest.model_fields["compliance"].annotation),
                      ("inputs[]", Manifest.model_fields["inputs"].annotation.__args__[0]),
                      ("output", Manifest.model_fields["output"].annotation)):
        for field in sub.model_fields:
            assert f"`{name}.{field}`" in text, f"docs/manifest.md does not explain {name}.{field}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_manifestish)
def test_what_the_parser_accepts_the_json_schema_accepts(obj):
    try:
        parse(obj)
    except ManifestError:
        return
    jsonschema.validate(obj, manifest_json_schema())
