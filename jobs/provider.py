"""Ray Jobs entrypoint: `ray job submit --address http://127.0.0.1:8265 --working-dir . --
python jobs/provider.py --config FILE`. The signing key comes from the cluster's environment
(ETRID_SEED or the file the config names), never from these arguments.

This job's driver owns the head: the head's task workers stay reusable while it runs, and the head
ends with it. Stop it with `etrid-ray provider stop` (a drain), not `ray job stop` (which kills the
driver after a few seconds, and with it the head and whatever it was running)."""

from __future__ import annotations

import sys

from etrid_ray.service.runner import job_main

if __name__ == "__main__":
    sys.exit(job_main())
