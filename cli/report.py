"""`tinynlp report`: the comparison table of the latest run, and the metrics of one DVC revision
against another (wrapping `dvc metrics diff`)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tinynlp.config import load_params
from tinynlp.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, ConfigError, exit_code

SECTIONS = (("augment", "report.md"), ("evaluate", "metrics.md"))


def latest_tables(reports: Path) -> list[str]:
    """The stage reports the last run left, in DAG order."""
    return [path.read_text(encoding="utf-8").strip() for stage, name in SECTIONS
            if (path := reports / stage / name).is_file()]


def metrics_diff(a_rev: str, b_rev: str | None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dvc", "metrics", "diff", "--md", a_rev, *([b_rev] if b_rev else [])]
    return subprocess.run(command, capture_output=True, text=True)


def main(args) -> int:
    try:
        reports = Path(load_params(args.params, check_files=False).paths.reports)
    except ConfigError as exc:
        print(f"tinynlp report: {exc}", file=sys.stderr)
        return exit_code(exc)
    if args.rev:
        diff = metrics_diff(args.rev, args.against)
        if diff.returncode:
            print(f"tinynlp report: dvc metrics diff failed: {diff.stderr.strip()}", file=sys.stderr)
            return EXIT_FAILURE
        target = args.against or "workspace"
        print(f"# Metrics: {args.rev} -> {target}\n\n{diff.stdout.strip() or '(no metric changed)'}")
        return EXIT_OK
    tables = latest_tables(reports)
    if not tables:
        print(f"tinynlp report: no reports under {reports}/: run the pipeline first (dvc repro)", file=sys.stderr)
        return EXIT_CONFIG
    print("\n\n".join(tables))
    return EXIT_OK
