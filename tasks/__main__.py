"""DVC's entry point: `python -m tasks <stage> [--params params.yaml]` runs one stage. The
training stages also run as N processes: `torchrun --nproc_per_node N -m tasks finetune`."""
from __future__ import annotations

import argparse
import logging
import sys

from tasks import STAGE_ORDER, stage_function
from tasks.lock import WorkspaceBusyError, job_lock
from tinynlp import distributed
from tinynlp.config import load_params
from tinynlp.errors import ConfigError, DataValidationError, PipelineError
from tinynlp.logs import configure_logging

EXIT_CONFIG, EXIT_DATA, EXIT_BUSY, EXIT_OTHER = 2, 3, 4, 1
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
            stage_function(args.stage)(params)
    except PipelineError as exc:
        log.error("%s failed: %s", args.stage, exc)
        codes = {ConfigError: EXIT_CONFIG, DataValidationError: EXIT_DATA, WorkspaceBusyError: EXIT_BUSY}
        return next((code for kind, code in codes.items() if isinstance(exc, kind)), EXIT_OTHER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
