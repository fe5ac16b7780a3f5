"""The ``etrid-ray`` command line: config errors without a chain, then the real commands on the devnet."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from etrid_ray.blobs import blob_hash
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.cli import main

MNEMONIC = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"


def run(args: list[str], env: dict[str, str] | None = None):
    runner = CliRunner()
    base = {"ETRID_SEED": "", "ETRID_SEED_FILE": "", "ETRID_WS_URL": ""}
    base.update(env or {})
    return runner.invoke(main, args, env=base, catch_exceptions=False)


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "etrid_ray", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for cmd in ("devnet", "chain", "provider", "submit"):
        assert cmd in out.stdout


def test_renamed_options_list_the_new_names_and_still_take_the_old_ones(tmp_path) -> None:
    """The signing key is a key (`--key-file`), a random seed is a random seed (`--random-seed`): "seed" alone is
    the original specification's. The old names still work and are not listed."""
    for args, new, old in ((["chain", "info"], "--key-file", "--seed-file"),
                           (["keys", "inspect"], "--key-file", "--seed-file"),
                           (["demo"], "--random-seed", "--seed "),
                           (["simulate"], "--random-seed", "--seed ")):
        res = run([*args, "--help"])
        assert res.exit_code == 0 and new in res.output and old not in res.output, (args, res.output)
    key = tmp_path / "key"
    key.write_text("//Bob")
    for name in ("--key-file", "--seed-file"):
        res = run(["keys", "inspect", name, str(key), "--json"])
        assert res.exit_code == 0 and json.loads(res.output)["address"] == dev_signer("Bob").address, res.output
    res = run(["chain", "info", "--seed-file", str(tmp_path / "missing")])  # the error names the new option
    assert res.exit_code == 2 and "--key-file" in res.output


def test_simulate_offers_every_registered_policy_and_the_oracle() -> None:
    from etrid_ray.scaling import POLICIES

    res = run(["simulate", "--help"])
    assert res.exit_code == 0
    assert f"[{'|'.join([*POLICIES, 'oracle'])}]" in res.output
    res = run(["simulate", "--policy", "no-such-policy"])
    assert res.exit_code == 2 and "no-such-policy" in res.output and "profit" in res.output


def test_devnet_command_documents_its_options() -> None:
    res = run(["devnet", "--help"])
    assert res.exit_code == 0
    for opt in ("--host", "--port", "--block-time", "--data-dir", "--blob-limit-mb"):
        assert opt in res.output


def test_devnet_command_serves_and_stops_on_sigterm(tmp_path) -> None:
    """`etrid-ray devnet` itself (not `python -m etrid_ray.devnet`): prints its URL, answers, stops by pid."""
    import os
    import selectors
    import signal
    import time
    import urllib.request

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "etrid_ray",
            "devnet",
            "--port",
            "0",
            "--block-time",
            "0",
            "--data-dir",
            str(tmp_path / "chain"),
            "--blob-limit-mb",
            "1",
            "--confirm-window",
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        url, deadline = "", time.monotonic() + 60
        while not url and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(0.2):
                line = proc.stdout.readline().strip()
                url = line if line.startswith("ws://") else ""
        assert url.startswith("ws://127.0.0.1:")
        req = urllib.request.Request(
            url.replace("ws://", "http://"),
            method="POST",
            data=b'{"id":1,"jsonrpc":"2.0","method":"system_health"}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["result"]["isSyncing"] is False
        # --blob-limit-mb 1 reached the server: a 2 MiB blob is refused
        from etrid_ray.blobs import BlobTooLarge, open_blob_store

        with pytest.raises(BlobTooLarge):
            open_blob_store(url).put(b"x" * (2 * 1024 * 1024))
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0
    assert (tmp_path / "chain").is_dir()


def test_missing_key_names_the_env_var_and_the_option() -> None:
    res = run(["provider", "register", "--model", "A100", "--vram-gb", "80", "--stake", "100"])
    assert res.exit_code == 2
    assert "ETRID_SEED" in res.output and "--key-file" in res.output


def test_bad_amounts_and_urls_name_the_option() -> None:
    res = run(
        ["provider", "register", "--model", "A100", "--vram-gb", "80", "--stake", "lots"], env={"ETRID_SEED": "//Bob"}
    )
    assert res.exit_code == 2 and "--stake" in res.output
    res = run(
        ["provider", "register", "--model", "A100", "--vram-gb", "80", "--stake", "0"], env={"ETRID_SEED": "//Bob"}
    )
    assert res.exit_code == 2 and "--stake" in res.output
    res = run(["chain", "info", "--url", "localhost:9944"])
    assert res.exit_code == 2 and "--url" in res.output and "ws://" in res.output


def test_invalid_seed_is_never_echoed(tmp_path) -> None:
    secret = "correct horse battery staple is not bip39"
    res = run(
        ["provider", "register", "--model", "A100", "--vram-gb", "80", "--stake", "100"], env={"ETRID_SEED": secret}
    )
    assert res.exit_code == 2
    assert secret not in res.output and "horse" not in res.output


def test_submit_rejects_a_manifest_that_is_not_json(tmp_path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    res = run(
        ["submit", "--manifest", str(bad), "--payment", "1", "--max-compute-time", "60"],
        env={"ETRID_SEED": "//Charlie"},
    )
    assert res.exit_code == 2 and "--manifest" in res.output


def test_unreachable_node_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run(["chain", "info", "--url", f"ws://127.0.0.1:{port}"])
    assert res.exit_code == 1
    assert "cannot connect" in res.output and "etrid-ray devnet" in res.output


# against the devnet --------------------------------------------------------------------------------
def test_chain_info_json_and_table(devnet, tmp_path) -> None:
    seed = tmp_path / "seed"
    seed.write_text(MNEMONIC)
    res = run(
        [
            "chain",
            "info",
            "--url",
            devnet.url,
            "--json",
            "--seed-file",
            str(seed),
            "--address",
            dev_signer("Alice").address,
        ]
    )
    assert res.exit_code == 0, res.output
    assert "bottom" not in res.output and "walk" not in res.output
    data = json.loads(res.output)
    assert data["spec_name"] == "ai-compute-pbc"
    assert data["token_decimals"] == 18 and data["ss58_format"] == 42
    for pallet in ("GpuRegistry", "JobMarketplace", "ConfidentialCompute", "Compliance", "Utility", "Sudo"):
        assert pallet in data["pallets"]
    alice = next(b for b in data["balances"] if b["label"] == "--address")
    assert int(alice["free"]) > 0
    res = run(["chain", "info", "--url", devnet.url], env={"ETRID_SEED": "//Alice"})
    assert res.exit_code == 0, res.output
    assert "JobMarketplace" in res.output and "ËDSC" in res.output and "//Alice" not in res.output


def test_provider_register_reserves_stake(devnet) -> None:
    eve = dev_signer("Eve")
    with ChainClient(devnet.url) as client:
        before = client.balance(eve.address)
        before_gpus = client.reader.provider_gpus(eve.address)
    res = run(
        [
            "provider",
            "register",
            "--url",
            devnet.url,
            "--gpus",
            "2",
            "--model",
            "A100",
            "--vram-gb",
            "80",
            "--stake",
            "100",
            "--json",
        ],
        env={"ETRID_SEED": "//Eve"},
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert len(data["gpu_ids"]) == 2
    with ChainClient(devnet.url) as client:
        after = client.balance(eve.address)
        assert client.reader.provider_gpus(eve.address) == before_gpus + data["gpu_ids"]
        node = client.reader.gpu(data["gpu_ids"][0])
    assert after.reserved - before.reserved == 2 * 100 * 10**18
    assert node is not None and node.specs.model == "A100" and node.specs.vram_gb == 80
    # below the minimum stake the pallet error is reported by name
    res = run(
        ["provider", "register", "--url", devnet.url, "--model", "A100", "--vram-gb", "80", "--stake", "99"],
        env={"ETRID_SEED": "//Eve"},
    )
    assert res.exit_code == 1 and "InsufficientStake" in res.output


def test_submit_prints_the_job_id(devnet, tmp_path) -> None:
    manifest = tmp_path / "job.json"
    manifest.write_text(json.dumps({"handler": "matmul", "args": {"n": 8}}))
    res = CliRunner().invoke(
        main,
        ["submit", "--url", devnet.url, "--manifest", str(manifest), "--payment", "2.5", "--max-compute-time", "120"],
        env={"ETRID_SEED": "//Ferdie", "ETRID_SEED_FILE": ""},
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    job_id = int(res.stdout.strip().splitlines()[0])
    with ChainClient(devnet.url) as client:
        job = client.reader.job(job_id)
    assert job is not None
    assert job.submitter == dev_signer("Ferdie").address
    assert job.payment == 25 * 10**17 and job.max_compute_time == 120
    assert job.input_hash == blob_hash(manifest.read_bytes())


@pytest.mark.parametrize("cmd", [["chain", "info"], ["provider", "register"], ["submit"]])
def test_every_command_has_help(cmd: list[str]) -> None:
    res = run([*cmd, "--help"])
    assert res.exit_code == 0 and "--url" in res.output
