"""DVC's entry point: `python -m tasks <stage> [--params params.yaml]` runs one stage. The
training stages also run as N processes: `torchrun --nproc_per_node N -m tasks finetune`."""
from __future__ import annotations

import argparse
import logging
import sys

from tasks.stages import STAGE_ORDER, run_stage
from tinynlp import distributed
from tinynlp.config import load_params
from tinynlp.errors import PipelineError, exit_code
from tinynlp.logs import configure_logging
from tinynlp.workspace import job_lock

log = logging.getLogger("tasks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks", description="Run one pipeline stage.")
    parser.add_argument("stage", choices=STAGE_ORDER)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    configure_logging(logging.INFO if distributed.is_main() else logging.WARNING)  # rank 0 tells the progress
    try:
        params = load_params(args.params)
        with distributed.process_group(params.execution.device, params.execution.precision), job_lock():
            run_stage(args.stage, params)
    except PipelineError as exc:
        log.error("%s failed: %s", args.stage, exc)
        return exit_code(exc)
    return exit_code(None)


if __name__ == "__main__":
    sys.exit(main())
