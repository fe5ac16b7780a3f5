"""Specification of admission: which jobs the provider claims, skips (leaves for others) or rejects (fails on chain)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etrid_ray.admission import REJECT_KINDS, SKIP_KINDS, Capabilities, JobTerms, Verdict, admit
from etrid_ray.manifest import Manifest, ManifestError
from etrid_ray.workloads.registry import REGISTRY

H = "0x" + "cd" * 32
PRICE = 10**14  # planck per GPU-second

CAPS = Capabilities(
    gpus_per_node=4, vram_gb=80, accelerator="A100", tee=None, region="eu-west-1",
    handlers=frozenset({"echo", "sleep", "matmul", "embedding"}), price_per_gpu_second=PRICE,
    max_input_bytes=1000,
)


def caps(**kw) -> Capabilities:
    return dataclasses.replace(CAPS, **kw)


def terms(*, model_type: str = "Custom", max_compute_time: int = 100, payment: int | None = None,
          gpus: float = 1) -> JobTerms:
    if payment is None:
        payment = int(PRICE * max_compute_time * Fraction(repr(float(gpus))))  # exactly break-even
    return JobTerms(job_id=7, model_type=model_type, max_compute_time=max_compute_time, payment=payment)


def manifest(handler: str = "echo", **kw) -> Manifest:
    return Manifest(handler=handler, **kw)


def verdict(m: Manifest | ManifestError, c: Capabilities = CAPS, **terms_kw) -> Verdict:
    gpus = m.resources.gpus if isinstance(m, Manifest) else 1
    return admit(terms(gpus=gpus, **terms_kw), m, c)


def test_a_job_that_fits_and_pays_the_price_is_claimed():
    assert verdict(manifest()) == Verdict("claim", "")


# --- reject: broken for everyone, failed on chain with the reason -----------------------------------


def test_bad_manifest_is_rejected_with_the_manifest_error_as_reason():
    err = ManifestError("invalid manifest: handler: Field required")
    assert admit(terms(), err, CAPS) == Verdict("reject", "invalid manifest: handler: Field required",
                                                "manifest_invalid")


def test_bad_manifest_is_rejected_even_by_a_provider_that_would_skip_everything():
    nothing = caps(handlers=frozenset(), gpus_per_node=0, price_per_gpu_second=10**30)
    assert admit(terms(), ManifestError("manifest hash mismatch"), nothing).action == "reject"


@pytest.mark.parametrize("handler", ["nosuch", "shell", "python", "os-system", "exec"])
def test_handler_outside_the_registry_is_rejected(handler):
    v = verdict(manifest(handler))
    assert v.action == "reject"
    assert v.reason == f"unknown handler {handler!r}"


def test_unknown_handler_is_rejected_even_if_the_provider_lists_it():
    v = verdict(manifest("nosuch"), caps(handlers=CAPS.handlers | {"nosuch"}))
    assert v.action == "reject"


def test_handler_that_does_not_serve_the_jobs_model_type_is_rejected():
    assert "ImageGen" not in REGISTRY["embedding"].model_types
    v = verdict(manifest("embedding"), model_type="ImageGen")
    assert v.action == "reject"
    assert "ImageGen" in v.reason and "embedding" in v.reason


@pytest.mark.parametrize("model_type", REGISTRY["embedding"].model_types)
def test_handler_serving_the_model_type_is_not_rejected_for_it(model_type):
    assert verdict(manifest("embedding"), model_type=model_type).action == "claim"


def test_declared_input_sizes_over_the_limit_are_rejected():
    m = manifest(inputs=[{"name": "a", "hash": H, "size": 600}, {"name": "b", "hash": H, "size": 401}])
    v = verdict(m)
    assert v.action == "reject"
    assert v.reason.startswith("inputs too large") and "1001" in v.reason


def test_declared_input_sizes_exactly_at_the_limit_are_admitted():
    m = manifest(inputs=[{"name": "a", "hash": H, "size": 600}, {"name": "b", "hash": H, "size": 400}])
    assert verdict(m).action == "claim"


def test_inputs_without_a_declared_size_are_admitted_and_checked_when_fetched():
    m = manifest(inputs=[{"name": "a", "hash": H}, {"name": "b", "hash": H, "size": 1000}])
    assert verdict(m).action == "claim"


def test_reject_rules_come_before_skip_rules():
    # oversized and also unaffordable, wrong GPU, wrong region: still rejected, so the consumer gets a refund
    m = manifest(inputs=[{"name": "a", "hash": H, "size": 10**9}], resources={"gpus": 64, "accelerator": "TPU"},
                 compliance={"allowed_regions": ["mars"]})
    assert admit(terms(payment=0), m, caps(handlers=frozenset())).action == "reject"


# --- skip: cannot or will not serve it here; left untouched for other providers ---------------------


def test_handler_not_in_our_allow_list_is_skipped():
    v = verdict(manifest("matmul"), caps(handlers=frozenset({"echo"})))
    assert v.action == "skip"
    assert "matmul" in v.reason


@pytest.mark.parametrize("gpus, action", [(4, "claim"), (3, "claim"), (0.5, "claim"), (5, "skip"), (64, "skip")])
def test_jobs_needing_more_gpus_than_one_node_has_are_skipped(gpus, action):
    assert verdict(manifest(resources={"gpus": gpus})).action == action


@pytest.mark.parametrize("vram, action", [(0, "claim"), (80, "claim"), (81, "skip")])
def test_jobs_needing_more_vram_than_our_gpus_have_are_skipped(vram, action):
    assert verdict(manifest(resources={"min_vram_gb": vram})).action == action


@pytest.mark.parametrize("wanted, ours, action", [
    (None, "A100", "claim"),                     # no preference: any GPU
    ("A100", "A100", "claim"),
    ("a100", "A100", "claim"),                   # case does not matter
    ("H100", "A100", "skip"),
    ("A10", "A100", "skip"),                     # a different GPU, not a prefix match
    ("A100", "A10", "skip"),
    ("A100", "A100-SXM4-80GB", "claim"),         # NVML's names (the head strips "NVIDIA ")
    ("A100", "A100 80GB PCIe", "claim"),
    ("V100", "Tesla V100-SXM2-16GB", "claim"),
    ("H100", "H100 80GB HBM3", "claim"),
    ("A100-SXM4-80GB", "A100-SXM4-80GB", "claim"),
    ("A100-SXM4-80GB", "A100 80GB PCIe", "skip"),
])
def test_jobs_needing_another_accelerator_are_skipped(wanted, ours, action):
    assert verdict(manifest(resources={"accelerator": wanted}), caps(accelerator=ours)).action == action


@pytest.mark.parametrize("wanted, ours, action", [
    (None, None, "claim"),
    (None, "sev-snp", "claim"),        # a TEE node may run ordinary jobs
    ("sev-snp", "sev-snp", "claim"),
    ("sev-snp", None, "skip"),
    ("sev-snp", "tdx", "skip"),
    ("tdx", "sgx", "skip"),
])
def test_jobs_needing_a_tee_we_do_not_have_are_skipped(wanted, ours, action):
    v = verdict(manifest(resources={"tee": wanted}), caps(tee=ours))
    assert v.action == action
    if action == "skip":
        assert wanted in v.reason


@pytest.mark.parametrize("region, action", [
    ("eu-west-1", "claim"), ("eu-central-1", "claim"), ("europe-west4", "claim"), ("EU-North-1", "claim"),
    ("us-east-1", "skip"), ("ap-south-1", "skip"), ("local", "skip"), ("westeurope", "skip"),
])
def test_gdpr_jobs_run_only_in_eu_regions(region, action):
    v = verdict(manifest(compliance={"template": "GDPR"}), caps(region=region))
    assert v.action == action
    if action == "skip":
        assert region in v.reason


@pytest.mark.parametrize("template", ["HIPAA", "SOC2", "CCPA", "FedRAMP", None])
def test_other_compliance_templates_do_not_restrict_the_region(template):
    assert verdict(manifest(compliance={"template": template}), caps(region="us-east-1")).action == "claim"


@pytest.mark.parametrize("allowed, region, action", [
    ([], "us-east-1", "claim"),                       # empty list: anywhere
    (["us-"], "us-east-1", "claim"),
    (["us-east-1"], "us-east-1", "claim"),
    (["us-east"], "us-east-2", "claim"),              # prefixes
    (["US-"], "us-east-1", "claim"),                  # case-insensitive
    (["eu-", "us-"], "us-west-2", "claim"),
    (["eu-"], "us-east-1", "skip"),
    (["us-east-1"], "us-east", "skip"),
    (["us-east-1"], "local", "skip"),
])
def test_allowed_regions_are_prefixes_of_our_region(allowed, region, action):
    assert verdict(manifest(compliance={"allowed_regions": allowed}), caps(region=region)).action == action


def test_gdpr_and_allowed_regions_must_both_hold():
    m = manifest(compliance={"template": "GDPR", "allowed_regions": ["us-", "eu-central"]})
    assert verdict(m, caps(region="us-east-1")).action == "skip"       # allowed, but not EU
    assert verdict(m, caps(region="eu-west-1")).action == "skip"       # EU, but not allowed
    assert verdict(m, caps(region="eu-central-1")).action == "claim"


def test_a_job_paying_one_planck_short_of_the_price_is_skipped():
    v = admit(terms(max_compute_time=100, payment=PRICE * 100 - 1), manifest(), CAPS)
    assert v.action == "skip"
    assert "planck/GPU-s" in v.reason


def test_price_is_per_gpu_second_over_the_whole_max_compute_time():
    m = manifest(resources={"gpus": 2})
    assert admit(terms(max_compute_time=10, payment=PRICE * 20), m, CAPS).action == "claim"
    assert admit(terms(max_compute_time=10, payment=PRICE * 20 - 1), m, CAPS).action == "skip"
    half = manifest(resources={"gpus": 0.5})                            # a fraction of a GPU pays a fraction
    assert admit(terms(max_compute_time=10, payment=PRICE * 5), half, CAPS).action == "claim"
    assert admit(terms(max_compute_time=10, payment=PRICE * 5 - 1), half, CAPS).action == "skip"


def test_a_free_provider_claims_unpaid_jobs():
    assert admit(terms(payment=0), manifest(), caps(price_per_gpu_second=0)).action == "claim"


# Planck amounts (10^14 per GPU-second × hours × GPUs) exceed a float's 53-bit mantissa: the boundary must be exact.
@settings(max_examples=500, deadline=None)
@given(price=st.integers(0, 10**16), seconds=st.integers(1, 7 * 86400),
       gpus=st.sampled_from(["1", "2", "3", "4", "0.5", "0.25", "0.1", "0.05", "0.3", "0.7"]),  # what Ray takes
       delta=st.integers(-3, 3))
def test_price_boundary_claims_iff_payment_covers_price_times_seconds_times_gpus(price, seconds, gpus, delta):
    required = Fraction(price) * seconds * Fraction(gpus)
    payment = max(0, int(required) + delta)
    v = admit(terms(max_compute_time=seconds, payment=payment), manifest(resources={"gpus": float(gpus)}),
              caps(price_per_gpu_second=price))
    assert v.action == ("claim" if payment >= required else "skip"), (payment, required)


@settings(max_examples=200, deadline=None)
@given(payment=st.integers(0, 10**24), seconds=st.integers(1, 10**6), gpus=st.integers(1, 4),
       price=st.integers(0, 10**18))
def test_price_verdict_is_monotonic_in_payment(payment, seconds, gpus, price):
    c = caps(price_per_gpu_second=price)
    m = manifest(resources={"gpus": gpus})
    if admit(terms(max_compute_time=seconds, payment=payment), m, c).action == "claim":
        assert admit(terms(max_compute_time=seconds, payment=payment + 1), m, c).action == "claim"
        assert admit(terms(max_compute_time=seconds, payment=payment), m,
                     caps(price_per_gpu_second=max(price - 1, 0))).action == "claim"


def test_admission_is_pure_same_inputs_same_verdict():
    m = manifest("matmul", resources={"gpus": 2, "accelerator": "A100"}, compliance={"template": "GDPR"})
    t = terms(gpus=2)
    assert {admit(t, m, CAPS) for _ in range(5)} == {Verdict("claim", "")}


def test_every_non_claim_verdict_has_a_reason():
    cases = [ManifestError("bad"), manifest("nosuch"), manifest("matmul", resources={"gpus": 9}),
             manifest(resources={"tee": "sgx"}), manifest(compliance={"allowed_regions": ["us"]})]
    for m in cases:
        v = verdict(m)
        assert v.action != "claim" and v.reason


def test_a_job_asking_for_zero_gpus_is_still_priced_as_a_minimum_gpu_fraction():
    zero = manifest(resources={"gpus": 0})
    assert verdict(zero, payment=1).action == "skip"  # one planck does not buy 100 s of anything
    floor = int(CAPS.price_per_gpu_second * 100 * 0.01) + 1
    assert verdict(zero, payment=floor).action == "claim"


@settings(max_examples=200, deadline=None)
@given(payment=st.integers(0, 10**30), seconds=st.integers(0, 10**6), gpus=st.sampled_from([0, 0.5, 1, 2, 8]),
       vram=st.integers(0, 200), accelerator=st.sampled_from([None, "A100", "H100", "MI300X", "x" * 32]),
       region=st.sampled_from(["eu-west-1", "us-east-1", "ap-south-1"]))
def test_every_verdict_names_one_of_a_fixed_set_of_kinds(payment, seconds, gpus, vram, accelerator, region):
    """Metrics count skips by kind: whatever price, size or region a consumer writes, the kind is one of a small
    fixed set (the numbers stay in the reason, for the logs)."""
    m = manifest(resources={"gpus": gpus, "min_vram_gb": vram, "accelerator": accelerator})
    v = admit(JobTerms(7, "Custom", seconds, payment), m, caps(region=region))
    assert (v.action, v.kind) == ("claim", "") or v.kind in (SKIP_KINDS if v.action == "skip" else REJECT_KINDS)


def test_a_skip_names_its_kind_and_keeps_the_particulars_in_its_reason():
    v = admit(terms(max_compute_time=100, payment=10**16), manifest(), caps(price_per_gpu_second=3 * 10**16))
    assert v.kind == "price" and "1e+14 planck/GPU-s < 30000000000000000" in v.reason
