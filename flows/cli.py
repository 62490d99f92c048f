"""`tinynlp`: one console entry point over the same shells.

    tinynlp run   [--force] [--task-runner R]        the DAG as a Prefect flow (reads params.yaml)
    tinynlp stage NAME [--params params.yaml]        one stage, as `dvc repro` runs it
    tinynlp predict [TEXT ...] [--file F] [--model DIR] [--json]
                                                     the promoted model on text (one text per line in F)
    tinynlp drift FILE                               a labelled batch against the promoted model's data
    tinynlp retrain [FILE ...] [--force]             the retraining flow (default: files in paths.incoming)
    tinynlp deploy [--apply]                         serve (or only register) the scheduled retraining
    tinynlp serve [--model DIR] [--port 8000]        the promoted model over HTTP (POST /predict)
    tinynlp report [--rev REV [--against REV]]       the latest run's tables, or `dvc metrics diff`

Exit codes: 0 success, 1 failure, 2 invalid params, 3 invalid data, 4 workspace busy (another run),
5 drift found (`tinynlp drift`).
"""
from __future__ import annotations

import argparse
import sys

from tasks import STAGE_ORDER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinynlp", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the whole DAG as a Prefect flow")
    run.add_argument("--force", action="store_true", help="run every stage even if up to date")
    run.add_argument("--task-runner", choices=("sequential", "threads", "dask", "ray"),
                     help="override execution.task_runner: independent stages at once on threads, Dask or Ray")
    stage = commands.add_parser("stage", help="run one stage (what dvc.yaml runs)")
    stage.add_argument("name", choices=STAGE_ORDER)
    stage.add_argument("--params", default="params.yaml")
    predict = commands.add_parser("predict", help="run the promoted model on text")
    predict.add_argument("texts", nargs="*", help="texts to label (or use --file)")
    predict.add_argument("--file", help="UTF-8 text file, one text per line ('-': stdin)")
    predict.add_argument("--model", default="models/promoted", help="promoted model directory")
    predict.add_argument("--json", action="store_true", help="one JSON object per text")
    predict.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    predict.add_argument("--chunk", type=int, default=1024,
                         help="texts read and predicted at a time (memory stays flat on long files)")
    drift = commands.add_parser("drift", help="test a batch file for drift against the promoted model's data")
    drift.add_argument("file")
    drift.add_argument("--params", default="params.yaml")
    retrain = commands.add_parser("retrain", help="validate, test for drift, retrain and promote only a better model")
    retrain.add_argument("files", nargs="*", help="batch files (default: everything in paths.incoming)")
    retrain.add_argument("--force", action="store_true", help="retrain even without drift")
    deploy = commands.add_parser("deploy", help="serve the retraining flow on the cron in params.yaml")
    deploy.add_argument("--apply", action="store_true", help="only register the deployment")
    serve = commands.add_parser("serve", help="serve the promoted model over HTTP (POST /predict, GET /health)")
    serve.add_argument("--model", default="models/promoted", help="promoted model directory")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    report = commands.add_parser("report", help="print the latest run's tables, or metrics of one revision "
                                                "against another")
    report.add_argument("--rev", help="git revision to compare from (wraps `dvc metrics diff`)")
    report.add_argument("--against", help="revision to compare to (default: the workspace)")
    report.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    if args.command in ("serve", "report"):
        from flows.report_cli import main as run_report
        from flows.serve_cli import main as run_serve
        from tinynlp.logs import configure_logging

        configure_logging()
        return (run_serve if args.command == "serve" else run_report)(args)
    if args.command == "drift":
        from flows.drift_cli import main as run_drift
        return run_drift(args)
    if args.command == "retrain":
        from flows.retrain import main as run_retrain
        return run_retrain([*args.files, *(["--force"] if args.force else [])])
    if args.command == "deploy":
        from flows.deploy import main as run_deploy
        return run_deploy(["--apply"] if args.apply else [])
    if args.command == "predict":
        from flows.predict_cli import main as run_predict
        return run_predict(args)
    if args.command == "run":
        from flows.pipeline import main as run_flow
        return run_flow([*(["--force"] if args.force else []),
                         *(["--task-runner", args.task_runner] if args.task_runner else [])])
    from tasks.__main__ import main as run_stage
    return run_stage([args.name, "--params", args.params])


if __name__ == "__main__":
    sys.exit(main())
