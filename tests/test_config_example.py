"""The example provider.yaml a new user copies: every setting there, with its default and what it does, and
the README shows exactly that file."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from etrid_ray.cli import main
from etrid_ray.config import GpuConfig, ProviderConfig, load_config
from etrid_ray.config_example import example_yaml, undocumented_fields

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_says_what_it_does() -> None:
    assert undocumented_fields() == []


def test_the_example_names_every_setting_and_loads_back_to_the_defaults(tmp_path: Path) -> None:
    text = example_yaml()
    data = yaml.safe_load(text)
    assert set(data) == set(ProviderConfig.model_fields)
    assert set(data["provider"]["gpus"]) == set(GpuConfig.model_fields)
    assert set(data["clouds"]) >= {"local", "aws", "gcp", "azure"}
    path = tmp_path / "provider.yaml"
    path.write_text(text)
    assert load_config(path, env={}) == ProviderConfig()
    lines = text.splitlines()
    for name, field in ProviderConfig.model_fields.items():  # each description sits right above its key
        at = lines.index(next(line for line in lines if line.startswith(f"{name}:")))
        above: list[str] = []
        while at > 0 and lines[at - 1].startswith("# "):
            at -= 1
            above.insert(0, lines[at][2:])
        assert " ".join(above) == " ".join((field.description or "").split()), name


def test_the_readme_shows_the_example_file() -> None:
    blocks = re.findall(r"```yaml\n(# provider\.yaml — every setting.*?)```", README.read_text(), re.S)
    assert blocks, "README has no complete example provider.yaml"
    assert blocks[0] == example_yaml(), "README's example is stale: paste `etrid-ray config example`"


def test_config_example_prints_it_and_config_check_names_a_misspelt_key(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["config", "example"])
    assert out.exit_code == 0 and out.output == example_yaml()
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus:\n  cont: 2\nray_adress: 127.0.0.1:6379\n")
    res = runner.invoke(main, ["config", "check", "--config", str(bad)], env={})
    assert res.exit_code == 2
    assert "gpus.cont: unknown setting: did you mean count?" in res.output
    assert "ray_adress: unknown setting: did you mean ray_address?" in res.output
    good = tmp_path / "good.yaml"
    good.write_text("gpus:\n  count: 2\n")
    res = runner.invoke(main, ["config", "check", "--config", str(good)], env={})
    assert res.exit_code == 0 and '"count": 2' in res.output
