"""Provider keys: `etrid-ray keys generate|k8s-secret|inspect`, and the phrase kept off terminals, logs and `ps`.

A phrase leaks through argv (every user's `ps` shows it), through logs, through a file created
world-readable for an instant, or through a terminal it was printed to. Each test here checks one of
those doors on the real command line, and the last one checks a long-running process that signs with
the key from its environment: its command line, `ps` output and logs never hold the phrase.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from substrateinterface import Keypair, KeypairType

from etrid_ray.chain import ChainClient, GpuSpecs, HardwareAttestation, dev_signer
from etrid_ray.chain.keys import load_signer
from etrid_ray.chain.submit import Call, Submitter
from etrid_ray.cli import main
from etrid_ray.kuberay import render as r
from etrid_ray.kuberay.credentials import k8s_secret
from etrid_ray.security.keys import Secret, generate, load_secret, write_private_file
from tests.helpers.tee_fixtures import FakeTeeTree, TestCA, tee_config

EDSC = 10**18
CLEAN_ENV = {"ETRID_SEED": "", "ETRID_SEED_FILE": "", "ETRID_WS_URL": ""}


def cli(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(main, args, env={**CLEAN_ENV, **(env or {})}, catch_exceptions=False)


def sr25519(phrase: str) -> Keypair:
    return Keypair.create_from_mnemonic(phrase, ss58_format=42, crypto_type=KeypairType.SR25519)


def leaks(phrase: str, text: str) -> list[str]:
    """Every form of the phrase that appears in text: whole, base64, or any run of 4 of its words."""
    words = phrase.split()
    forms = [phrase, base64.b64encode(phrase.encode()).decode()]
    forms += [" ".join(words[i:i + 4]) for i in range(len(words) - 3)]
    return [f for f in forms if f in text]


@pytest.fixture()
def permissive_umask():
    old = os.umask(0)  # the worst case: anything not pinned would come out world-readable
    yield
    os.umask(old)


# --- generate -----------------------------------------------------------------------------------


def test_generate_writes_the_phrase_0600_and_prints_only_the_address(tmp_path: Path, permissive_umask: None,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "provider.key"
    res = cli(["keys", "generate", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    phrase = out.read_text().strip()
    assert len(phrase.split()) == 12
    keypair = sr25519(phrase)
    assert res.stdout.strip() == keypair.ss58_address  # stdout: the address alone, for scripts
    assert "0x" + keypair.public_key.hex() in res.stderr
    assert leaks(phrase, res.output) == [] and leaks(phrase, caplog.text) == []
    # the file is a key the rest of the project reads as-is
    assert load_signer(file=out).address == keypair.ss58_address


def test_generate_refuses_without_a_destination_and_never_clobbers(tmp_path: Path) -> None:
    res = cli(["keys", "generate"])
    assert res.exit_code == 2 and "--out FILE" in res.output and "--stdout" in res.output
    res = cli(["keys", "generate", "--out", str(tmp_path / "k"), "--stdout"])
    assert res.exit_code == 2 and "exclusive" in res.output
    existing = tmp_path / "existing.key"
    existing.write_text("keep me")
    res = cli(["keys", "generate", "--out", str(existing)])
    assert res.exit_code == 2 and "--force" in res.output
    assert existing.read_text() == "keep me"
    link = tmp_path / "link.key"
    link.symlink_to(tmp_path / "elsewhere")
    assert cli(["keys", "generate", "--out", str(link)]).exit_code == 2
    assert not (tmp_path / "elsewhere").exists()  # a symlink is never followed
    existing.chmod(0o644)
    res = cli(["keys", "generate", "--out", str(existing), "--force", "--words", "24", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600
    phrase = existing.read_text().strip()
    assert len(phrase.split()) == 24 and sr25519(phrase).ss58_address == info["address"]
    assert info["scheme"] == "sr25519" and info["source"] == f"file:{existing}"
    assert leaks(phrase, res.output) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_generate_to_stdout_only_by_flag_in_subkeys_layout() -> None:
    res = cli(["keys", "generate", "--stdout"])
    assert res.exit_code == 0
    lines = dict(line.strip().split(":", 1) for line in res.stdout.splitlines())
    phrase = lines["Secret phrase"].strip()
    keypair = sr25519(phrase)
    assert lines["SS58 Address"].strip() == keypair.ss58_address
    assert lines["Public key (hex)"].strip() == "0x" + keypair.public_key.hex()
    assert lines["Secret seed"].strip() == "0x" + keypair.seed_hex.hex()
    assert lines["Network ID"].strip() == "substrate"


def test_two_keys_differ() -> None:
    (s1, i1), (s2, i2) = generate(), generate()
    assert s1 != s2 and i1.address != i2.address


# --- k8s-secret ---------------------------------------------------------------------------------


def test_k8s_secret_renders_the_credentials_secret_without_echoing_the_phrase(
        tmp_path: Path, permissive_umask: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = tmp_path / "provider.key"
    assert cli(["keys", "generate", "--out", str(key)]).exit_code == 0
    phrase = key.read_text().strip()
    out = tmp_path / "secret.yaml"
    res = cli(["keys", "k8s-secret", "--seed-file", str(key), "--out", str(out)])
    assert res.exit_code == 0, res.output
    address = sr25519(phrase).ss58_address
    assert address in res.output and leaks(phrase, res.output) == [] and leaks(phrase, caplog.text) == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = yaml.safe_load(out.read_text())
    assert (doc["apiVersion"], doc["kind"], doc["type"]) == ("v1", "Secret", "Opaque")
    assert doc["metadata"]["name"] == r.SECRET_NAME and doc["metadata"]["namespace"] == r.NAMESPACE
    assert "stringData" not in doc
    assert base64.b64decode(doc["data"]["ETRID_SEED"]).decode() == phrase
    assert base64.b64decode(doc["data"]["ETRID_PROVIDER_ADDRESS"]).decode() == address
    # the head's required seed volume finds its keys in this Secret
    head = r.head_group(r.ProviderConfig())["template"]["spec"]
    required = [v["secret"] for v in head["volumes"] if "secret" in v and not v["secret"].get("optional")]
    assert required and all(s["secretName"] == doc["metadata"]["name"]
                            and {i["key"] for i in s["items"]} <= set(doc["data"]) for s in required)
    # refused without a destination; printed only with the flag
    assert cli(["keys", "k8s-secret", "--seed-file", str(key)]).exit_code == 2
    res = cli(["keys", "k8s-secret", "--stdout", "--namespace", "ns2", "--name", "creds"],
              env={"ETRID_SEED": phrase})  # from the environment, like everywhere else
    assert res.exit_code == 0
    shown = yaml.safe_load(res.stdout)
    assert shown["metadata"] == {**doc["metadata"], "name": "creds", "namespace": "ns2"}
    assert shown["data"] == doc["data"]


def test_k8s_secret_and_inspect_reject_a_bad_key_without_quoting_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("correct horse battery staple not a bip39 phrase at all")
    for args in (["keys", "k8s-secret", "--seed-file", str(bad), "--stdout"],
                 ["keys", "inspect", "--seed-file", str(bad)]):
        res = cli(args)
        assert res.exit_code == 2 and "not a valid" in res.output and "horse battery" not in res.output
    res = cli(["keys", "inspect"])
    assert res.exit_code == 2 and "--key-file" in res.output and "ETRID_SEED" in res.output


# --- inspect ------------------------------------------------------------------------------------


def test_inspect_shows_the_public_side_from_a_file_or_the_environment(tmp_path: Path) -> None:
    secret, info = generate()
    key = write_private_file(tmp_path / "k", secret.reveal())
    from_file = cli(["keys", "inspect", "--key-file", str(key), "--json"])
    from_env = cli(["keys", "inspect", "--json"], env={"ETRID_SEED": secret.reveal()})
    other_var = cli(["keys", "inspect", "--env-var", "MY_KEY"], env={"MY_KEY": secret.reveal()})
    for res in (from_file, from_env, other_var):
        assert res.exit_code == 0, res.output
        assert leaks(secret.reveal(), res.output) == []
    a, b = json.loads(from_file.stdout), json.loads(from_env.stdout)
    assert a["address"] == b["address"] == info.address and a["public_key"] == info.public_key
    assert a["source"] == f"file:{key}" and b["source"] == "env:ETRID_SEED"
    assert info.address in other_var.stdout and "env:MY_KEY" in other_var.stdout
    dev = cli(["keys", "inspect", "--json"], env={"ETRID_SEED": "//Alice"})  # dev URIs too
    assert json.loads(dev.stdout)["address"] == dev_signer("Alice").address


def test_a_secret_object_never_shows_or_pickles_its_value(tmp_path: Path) -> None:
    secret, info = generate()
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret]), repr(info)):
        assert leaks(secret.reveal(), text) == []
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    doc = k8s_secret(secret, info)
    assert leaks(secret.reveal(), json.dumps(doc["metadata"])) == []
    loaded, source = load_secret(environ={"ETRID_SEED": secret.reveal()})
    assert loaded == secret and source == "env:ETRID_SEED" and isinstance(loaded, Secret)


# --- a long-running signer: not in argv, ps or logs ------------------------------------------------


def _proc_text(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def test_a_signing_process_keeps_its_key_out_of_argv_ps_and_logs(devnet, tmp_path: Path) -> None:
    """`etrid-ray tee attest --watch` (a node agent that signs with the provider key every few seconds)
    runs with the key in its environment and DEBUG logging; while it signs, its /proc cmdline, `ps`
    output and everything it logged are searched for the phrase in every form."""
    secret, info = generate()
    phrase = secret.reveal()
    with ChainClient(devnet.url) as client:
        Submitter(client.conn, dev_signer("Alice")).submit(
            Call("Balances", "transfer_keep_alive", {"dest": info.address, "value": 1000 * EDSC}))
        signer = load_signer(environ={"ETRID_SEED": phrase})
        gpu = client.provider(signer).register_gpu(GpuSpecs("H100", 94, 132, 1980, 700), 100 * EDSC,
                                                   HardwareAttestation(b"", 1000, int(time.time())))
        ca = TestCA()
        with FakeTeeTree(tmp_path / "node", "sev-snp", ca) as tree:
            cfg = tee_config(tmp_path, ca, root=tree.root)
            cfg_path = tmp_path / "tee.json"
            cfg_path.write_text(cfg.model_dump_json())
            log_out, log_err = (tmp_path / "agent.out").open("wb"), (tmp_path / "agent.err").open("wb")
            args = [sys.executable, "-m", "etrid_ray", "tee", "attest", "--watch", "--interval", "0.3",
                    "--run-for", "60", "--url", devnet.url, "--gpu-id", str(gpu), "--tee-config", str(cfg_path),
                    "--log-level", "DEBUG", "--json"]
            proc = subprocess.Popen(args, stdout=log_out, stderr=log_err,
                                    env={**os.environ, "ETRID_SEED": phrase, "ETRID_SEED_FILE": "",
                                         "PYTHONUNBUFFERED": "1"})
            try:
                deadline = time.monotonic() + 60
                filed: list[dict] = []
                while time.monotonic() < deadline and len(filed) < 2:
                    lines = (tmp_path / "agent.out").read_text().splitlines()
                    filed = [d for d in map(json.loads, lines) if d["ok"] and d["submitted"]]
                    assert proc.poll() is None, (tmp_path / "agent.err").read_text()[-2000:]
                    time.sleep(0.2)
                assert len(filed) >= 2, (tmp_path / "agent.err").read_text()[-2000:]
                # the key really is in the process — and only in its environment
                assert phrase in _proc_text(proc.pid, "environ")
                cmdline = _proc_text(proc.pid, "cmdline")
                assert "tee attest" in cmdline and leaks(phrase, cmdline) == []
                ps = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True).stdout
                assert str(proc.pid) in ps and leaks(phrase, ps) == []
            finally:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
                log_out.close()
                log_err.close()
        logs = (tmp_path / "agent.out").read_text() + (tmp_path / "agent.err").read_text()
        assert "DEBUG" in logs  # it did log, verbosely
        seed_hex = sr25519(phrase).seed_hex.hex()
        assert leaks(phrase, logs) == [] and seed_hex not in logs
        # and what it signed is on chain, under the generated account's GPU
        att = client.reader.tee_attestation(gpu)
        assert att is not None and att.tee_type == "AMDSEV" and len(att.quote) == 1184
