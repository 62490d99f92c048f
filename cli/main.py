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
    tinynlp explain TEXT ... [--model DIR] [--html F] per-word attributions of the prediction
    tinynlp lineage [VERSION] [--json]               data versions -> model versions, and why each was promoted

Exit codes: 0 success, 1 failure, 2 invalid params, 3 invalid data, 4 workspace busy (another run),
5 drift found (`tinynlp drift`).
"""
from __future__ import annotations

import argparse
import sys

from tasks.stages import STAGE_ORDER
from tinynlp.errors import (EXIT_CODES_HELP, EXIT_CONFIG, EXIT_DATA, EXIT_DRIFT, EXIT_FAILURE,
                            EXIT_OK)


class _HelpFormat(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples kept as written, and every option's default shown."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinynlp", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, examples: str, codes: str = EXIT_CODES_HELP) -> argparse.ArgumentParser:
        # the summary heads the subcommand's own --help too; examples show what a user types
        return commands.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormat,
                                   epilog=f"examples:\n{examples}\n\n{codes}")

    run = command("run", "run the whole DAG as a Prefect flow (reads params.yaml; up-to-date stages end Cached)",
                  "  tinynlp run\n  tinynlp run --force --task-runner threads")
    run.add_argument("--force", action="store_true", help="run every stage even if up to date")
    run.add_argument("--task-runner", choices=("sequential", "threads", "dask", "ray"),
                     help="override execution.task_runner: independent stages at once on threads, Dask or Ray")
    stage = command("stage", "run one stage, exactly as `dvc repro` runs it (python -m tasks NAME)",
                    "  tinynlp stage ingest\n  tinynlp stage finetune --params my-params.yaml")
    stage.add_argument("name", choices=STAGE_ORDER, help="the stage to run")
    stage.add_argument("--params", default="params.yaml", help="params file")
    predict = command("predict", "run the promoted model on text: entities (NER) or a label with probabilities",
                      '  tinynlp predict "Alice moved to Paris ."\n  tinynlp predict --file texts.txt --json'
                      "\n  cat texts.txt | tinynlp predict --file -")
    predict.add_argument("texts", nargs="*", help="texts to label (or use --file)")
    predict.add_argument("--file", help="UTF-8 text file, one text per line, blank lines skipped ('-': stdin)")
    predict.add_argument("--model", default="models/promoted", help="promoted model directory")
    predict.add_argument("--json", action="store_true", help="one JSON object per text")
    predict.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    predict.add_argument("--redact-pii", action="store_true",
                         help="mask e-mail addresses, phone and card numbers and other personal data in the output")
    predict.add_argument("--chunk", type=int, default=1024,
                         help="texts read and predicted at a time (memory stays flat on long files)")
    predict.add_argument("--document", action="store_true",
                         help="the texts are one document's sentences, in order: a model trained with document "
                              "context (finetune.context) reads each with its neighbours")
    drift = command("drift", "test a labelled batch file for drift against the promoted model's training data",
                    "  tinynlp drift new.conll", f"exit codes: {EXIT_OK} no drift, {EXIT_DRIFT} drift found, "
                    f"{EXIT_FAILURE} failure, {EXIT_CONFIG} invalid params or no promoted model, "
                    f"{EXIT_DATA} invalid batch (named by file, line and rule)")
    drift.add_argument("file", help="the batch, in the training data's format (CoNLL, TSV, CSV, JSONL)")
    drift.add_argument("--params", default="params.yaml", help="params file (thresholds in its drift: section)")
    retrain = command("retrain", "validate, test for drift, retrain and promote only a better model",
                      "  tinynlp retrain                 # every file in data/incoming/\n"
                      "  tinynlp retrain new.conll --force")
    retrain.add_argument("files", nargs="*", help="batch files (default: everything in paths.incoming)")
    retrain.add_argument("--force", action="store_true", help="retrain even without drift")
    deploy = command("deploy", "serve the retraining flow on the cron in params.yaml (retrain.schedule)",
                     "  tinynlp deploy\n  tinynlp deploy --apply           # register only, for a worker")
    deploy.add_argument("--apply", action="store_true", help="only register the deployment")
    serve = command("serve", "serve the promoted model over HTTP (POST /predict, GET /health)",
                    "  tinynlp serve --port 8000\n"
                    "  curl -s localhost:8000/predict -H 'content-type: application/json' "
                    "-d '{\"texts\": [\"Alice moved to Paris .\"]}'")
    serve.add_argument("--model", default="models/promoted", help="promoted model directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    serve.add_argument("--params", default="params.yaml",
                       help="params file whose `serve` section sets the limits (absent: the defaults)")
    serve.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                       help="event loop (auto: uvloop where installed, as it is with tinynlp)")
    serve.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto",
                       help="HTTP/1.1 parser (auto: httptools where installed, as it is with tinynlp)")
    serve.add_argument("--redact-pii", action="store_true",
                       help="mask e-mail addresses, phone and card numbers and other personal data in responses")
    explain = command("explain", "explain a prediction: per-word attributions (integrated gradients) of the torch "
                      "model behind the promoted variant", '  tinynlp explain "Alice moved to Paris ."\n'
                      '  tinynlp explain "Alice moved to Paris ." --html why.html')
    explain.add_argument("texts", nargs="+", help="texts to explain")
    explain.add_argument("--model", default="models/promoted",
                         help="promoted model directory (its PyTorch source is used) or a stage model directory")
    explain.add_argument("--html", help="also write a self-contained HTML page here")
    explain.add_argument("--json", action="store_true",
                         help="one JSON object per text: entities with character offsets (Hugging Face field names)")
    explain.add_argument("--steps", type=int, default=32, help="integration steps (more: smaller convergence delta)")
    report = command("report", "print the latest run's tables, or metrics of one revision against another",
                     "  tinynlp report\n  tinynlp report --rev HEAD~1\n"
                     "  tinynlp report --rev tinynlp-model@v1.0.0 --against tinynlp-model@v2.0.0")
    report.add_argument("--rev", help="git revision to compare from (wraps `dvc metrics diff`)")
    report.add_argument("--against", help="revision to compare to (default: the workspace)")
    report.add_argument("--params", default="params.yaml", help="params file (where the reports are)")
    lineage = command("lineage", "print the chain data versions -> model versions: each registered version's "
                      "revision, date, data, scores and why it was promoted (one version in detail with VERSION)",
                      "  tinynlp lineage\n  tinynlp lineage v2.0.0\n  tinynlp lineage model-v1 --json",
                      f"exit codes: {EXIT_OK} success, {EXIT_FAILURE} failure, {EXIT_CONFIG} invalid params, "
                      "unknown version or nothing recorded yet")
    lineage.add_argument("version", nargs="?",
                         help="a version (v2.0.0, v2, the GTO tag tinynlp-model@v2.0.0, or a legacy tag model-v1)")
    lineage.add_argument("--json", action="store_true", help="the facts as JSON")
    lineage.add_argument("--params", default="params.yaml", help="params file (model name, tag prefix, reports)")
    args = parser.parse_args(argv)
    if args.command in ("serve", "report"):
        from cli.report import main as run_report
        from cli.serve import main as run_serve
        from tinynlp.logs import configure_logging

        configure_logging()
        return (run_serve if args.command == "serve" else run_report)(args)
    if args.command == "lineage":
        from cli.lineage import main as run_lineage
        return run_lineage(args)
    if args.command == "explain":
        from cli.explain import main as run_explain
        return run_explain(args)
    if args.command == "drift":
        from cli.drift import main as run_drift
        return run_drift(args)
    if args.command == "retrain":
        from flows.retrain import main as run_retrain
        return run_retrain([*args.files, *(["--force"] if args.force else [])])
    if args.command == "deploy":
        from flows.deploy import main as run_deploy
        return run_deploy(["--apply"] if args.apply else [])
    if args.command == "predict":
        from cli.predict import main as run_predict
        return run_predict(args)
    if args.command == "run":
        from flows.pipeline import main as run_flow
        return run_flow([*(["--force"] if args.force else []),
                         *(["--task-runner", args.task_runner] if args.task_runner else [])])
    from tasks.__main__ import main as run_stage
    return run_stage([args.name, "--params", args.params])


if __name__ == "__main__":
    sys.exit(main())
