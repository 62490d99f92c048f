"""`tinynlp drift FILE`: a batch file tested against the promoted model's training data; the
verdict and every signal as a table, the full report in reports/drift/report.json.

Exit codes: 0 no drift, 5 drift, 2 invalid params or no promoted model, 3 invalid data."""
from __future__ import annotations

import logging
import sys

from tinynlp.errors import ConfigError, DataValidationError

DRIFT_EXIT = 5
log = logging.getLogger(__name__)


def signal_rows(verdict: dict, decide_on) -> list[dict]:
    # a threshold signal (vocabulary: excess out-of-vocabulary rate) has no p-value: a dash, not "None"
    return [{"signal": s["name"], "statistic": s["statistic"], "p_value": "–" if s["p_value"] is None else s["p_value"],
             "flagged": s["drifted"], "decides": s["name"] in decide_on} for s in verdict["signals"]]


def main(args) -> int:
    from tasks.drift import run_drift
    from tinynlp.config import load_params
    from tinynlp.logs import configure_logging
    from tinynlp.reporting import markdown_table

    configure_logging()
    try:
        params = load_params(args.params)
        report = run_drift(params, args.file)
    except ConfigError as exc:
        print(f"tinynlp drift: {exc}", file=sys.stderr)
        return 2
    except DataValidationError as exc:
        print(f"tinynlp drift: the batch is invalid (not drift):\n{exc}", file=sys.stderr)
        return 3
    verdict = report["verdict"]
    rows = signal_rows(verdict, params.drift.decide_on)
    print(markdown_table(rows, list(rows[0])))
    print(("DRIFT: " if verdict["drifted"] else "no drift: ") + "; ".join(verdict["reasons"]))
    return DRIFT_EXIT if verdict["drifted"] else 0
