"""`tinynlp drift PATH`: a batch tested against the promoted model's training data; the verdict and
every signal as a table, the full report in reports/drift/report.json. PATH is a labelled batch
file, or unlabelled data: a capture folder (`serve.capture`), a `.txt` file of one text per line,
a CoNLL file without tags, or a classification table without its label column. Unlabelled data that drifted gets a labelling queue (drift.queue_dir).

Exit codes: 0 no drift, 5 drift, 2 invalid params or no promoted model, 3 invalid data
(tinynlp.errors)."""
from __future__ import annotations

import logging
import sys

from tinynlp.errors import EXIT_DRIFT, DataValidationError, PipelineError, exit_code

log = logging.getLogger(__name__)


def main(args) -> int:
    from tinynlp.drift_check import run_drift, signal_rows
    from tinynlp.config import load_params
    from tinynlp.logs import configure_logging
    from tinynlp.reporting import markdown_table

    configure_logging()
    try:
        params = load_params(args.params)
        report = run_drift(params, args.file)
    except PipelineError as exc:
        invalid = "the batch is invalid (not drift):\n" if isinstance(exc, DataValidationError) else ""
        print(f"tinynlp drift: {invalid}{exc}", file=sys.stderr)
        return exit_code(exc)
    verdict = report["verdict"]
    rows = signal_rows(verdict, report["decided_on"])
    print(markdown_table(rows, list(rows[0])))
    print(("DRIFT: " if verdict["drifted"] else "no drift: ") + "; ".join(verdict["reasons"]))
    if not report["labelled"]:
        print(f"unlabelled {report['input']}: decided on {', '.join(report['decided_on'])} (no labels to test)")
    if "labelling_queue" in report:
        queue = report["labelling_queue"]
        print(f"labelling queue: {queue['texts']} text(s) in {queue['file']}, least sure first; {queue['next']}")
    return EXIT_DRIFT if verdict["drifted"] else exit_code(None)
