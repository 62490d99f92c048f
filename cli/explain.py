"""`tinynlp explain`: why the promoted model (or any stage model) predicted what it did, per word,
in the terminal and as a self-contained HTML page."""
from __future__ import annotations

import sys
from pathlib import Path

from tinynlp.errors import PipelineError, exit_code


def main(args) -> int:
    from tinynlp.atomic import atomic_write_text
    from tinynlp.explain import Explainer, as_page, as_terminal

    try:
        explainer = Explainer(args.model, args.steps)
        results = [(text, explainer.explain(text)) for text in args.texts]
    except PipelineError as exc:
        print(f"tinynlp explain: {exc}", file=sys.stderr)
        return exit_code(exc)
    for text, explanations in results:
        print(as_terminal(text, explanations))
    if args.html:
        atomic_write_text(Path(args.html), as_page(results))
        print(f"wrote {args.html}")
    return exit_code(None)
