"""The retraining flow as a scheduled Prefect deployment, its cron and timezone from params.yaml
(`retrain.schedule`, `retrain.timezone`), at most one run at a time; beside it the traffic check
(flows/traffic.py) on `drift.traffic_schedule`, which tests captured traffic and writes labelling queues.

    python -m flows.deploy            serve it from this process (Ctrl-C stops; runs happen here)
    python -m flows.deploy --apply    only register it with the Prefect API (then `prefect deployment ls`)

Served runs execute in this workspace, one at a time (deployment concurrency limit 1, and the
retraining flow queues for its workspace's global concurrency limit; the workspace lock refuses
any hand-started run meanwhile). For production, deploy to a work pool instead:
`prefect work-pool create retrain-pool --type process`, then
`prefect deploy --prefect-file flows/prefect.yaml --name scheduled-retrain` and `prefect worker start --pool retrain-pool`
(see the README: scheduling).
"""
from __future__ import annotations

import argparse
import logging
import sys

import flows  # noqa: F401  (Prefect home and loggers, before prefect is imported)
from prefect.schedules import Cron

from flows.pipeline import PARAMS_FILE
from flows.retrain import retrain
from flows.traffic import traffic_check
from tinynlp.config import Params, load_params
from tinynlp.logs import configure_logging

log = logging.getLogger(__name__)
DEPLOYMENT = "scheduled-retrain"
TRAFFIC_DEPLOYMENT = "scheduled-traffic-check"


def build(params: Params):
    """The deployment object: the retrain flow on the params' cron, one run at a time."""
    return retrain.to_deployment(
        name=DEPLOYMENT, schedules=[Cron(params.retrain.schedule, timezone=params.retrain.timezone)],
        concurrency_limit=1, tags=["retrain"], parameters={"files": None, "force": False},
        description="new files in paths.incoming: validate, test for drift, retrain, promote only a better model")


def build_traffic(params: Params):
    """The traffic check on its own cron: captured traffic against the training data, unlabelled."""
    return traffic_check.to_deployment(
        name=TRAFFIC_DEPLOYMENT, schedules=[Cron(params.drift.traffic_schedule, timezone=params.retrain.timezone)],
        concurrency_limit=1, tags=["drift"], parameters={"folder": None},
        description="served traffic (serve.capture.dir) tested for drift without labels; a labelling queue if so")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.split("\n")[0])
    parser.add_argument("--apply", action="store_true", help="register the deployment and exit (no serving)")
    args = parser.parse_args(argv)
    configure_logging()
    params = load_params(PARAMS_FILE)
    deployment, traffic = build(params), build_traffic(params)
    if args.apply:
        deployment_id = deployment.apply()
        log.info("deployment retrain/%s registered (%s): cron %r %s", DEPLOYMENT, deployment_id,
                 params.retrain.schedule, params.retrain.timezone)
        traffic_id = traffic.apply()
        log.info("deployment traffic-check/%s registered (%s): cron %r %s", TRAFFIC_DEPLOYMENT, traffic_id,
                 params.drift.traffic_schedule, params.retrain.timezone)
        return 0
    from prefect import serve

    serve(deployment, traffic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
