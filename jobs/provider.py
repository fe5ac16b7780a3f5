"""Ray Jobs entrypoint: `ray job submit --address http://127.0.0.1:8265 --working-dir . --
python jobs/provider.py --config FILE`. The signing key comes from the cluster's environment
(ETRID_SEED or the file the config names), never from these arguments."""

from __future__ import annotations

import argparse
import sys

from etrid_ray.chain.errors import ConfigError
from etrid_ray.config import load_config
from etrid_ray.provider.runner import run_provider


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="provider config (YAML or JSON)")
    parser.add_argument("--run-for", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--status-every", type=float, default=10.0)
    parser.add_argument("--leave-running", action="store_true", help="keep the detached head when exiting")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_provider(config, address="auto", run_for=args.run_for, status_every=args.status_every,
                 leave_running=args.leave_running)
    return 0


if __name__ == "__main__":
    sys.exit(main())
