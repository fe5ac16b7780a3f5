"""Writes the manifest's JSON Schema to docs/manifest.schema.json (tests fail when it drifts).

    python -m etrid_ray.manifest_schema_export [PATH]      # default: docs/manifest.schema.json
    python -m etrid_ray.manifest_schema_export --check     # exit 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from etrid_ray.manifest import manifest_json_schema

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "manifest.schema.json"


def render() -> str:
    """The file's exact text: the schema as indented JSON (keys in pydantic's order) and a newline."""
    return json.dumps(manifest_json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the file differs")
    opts = parser.parse_args(argv)
    text = render()
    if opts.check:
        current = opts.path.read_text(encoding="utf-8") if opts.path.exists() else None
        if current != text:
            print(f"{opts.path} is out of date: run python -m etrid_ray.manifest_schema_export", file=sys.stderr)
            return 1
        return 0
    opts.path.parent.mkdir(parents=True, exist_ok=True)
    opts.path.write_text(text, encoding="utf-8")
    print(f"wrote {opts.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
