"""The traffic check: what `tinynlp serve` captured (`serve.capture.dir`) tested for drift against
the promoted model's training data, without labels; when it drifted, a labelling queue is written
(drift.queue_dir) for a person to correct and drop into paths.incoming, where the retraining flow
takes over. Deployed on `drift.traffic_schedule` by flows/deploy.py beside the retraining flow.

    python -m flows.traffic [FOLDER]
"""
from __future__ import annotations

import argparse
import logging
import sys

import flows  # noqa: F401  (Prefect home and loggers, before prefect is imported)
from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.pipeline import PARAMS_FILE, run_flow_printing_result
from flows.retrain import drift
from tinynlp.config import load_params

log = logging.getLogger(__name__)


@flow(name="traffic-check")
def traffic_check(folder: str | None = None) -> dict:
    """Drift of the captured traffic (unlabelled); a labelling queue when it drifted."""
    params = load_params(PARAMS_FILE)
    report = drift(params, folder or params.serve.capture.dir)
    queue = report.get("labelling_queue")
    if queue:
        create_markdown_artifact(
            key="labelling-queue", description="captured texts to label first, the model's predictions pre-filled",
            markdown=f"# Labelling queue: {queue['texts']} text(s)\n\n`{queue['file']}`\n\n{queue['next']}.\n\n"
                     f"Chosen from {queue['selection']['candidates']} distinct texts, "
                     f"{queue['selection']['novel']} of them far from the training data; least sure first.\n")
    return {"drifted": report["verdict"]["drifted"], "reasons": report["verdict"]["reasons"],
            "labelling_queue": queue["file"] if queue else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.traffic", description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", help="a capture folder (default: serve.capture.dir)")
    args = parser.parse_args(argv)

    return run_flow_printing_result(traffic_check, args.folder)


if __name__ == "__main__":
    sys.exit(main())
