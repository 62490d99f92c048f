"""`tinynlp explain`: why the promoted model (or any stage model) predicted what it did, per word,
in the terminal and as a self-contained HTML page."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tinynlp.errors import PipelineError, exit_code


def as_record(text: str, explanations) -> dict:
    """One text's explanations as JSON: each entity under the Hugging Face pipeline's field names
    (`entity_group`, `word`, character `start`/`end`, `score`) or the label, with its words'
    attributions and the convergence delta."""
    from tinynlp.predict import word_spans

    spans = word_spans(text)
    records = []
    for e in explanations:
        kind, _, shown = e.target.partition(": ")
        record = {"score": e.score, "delta": e.delta,
                  "attributions": [{"word": w, "start": spans[i][0], "end": spans[i][1], "attribution": a}
                                   for i, (w, a) in enumerate(zip(e.words, e.attributions))]}
        if e.span is None:
            record["label"] = shown
        else:
            start, end = spans[e.span[0]][0], spans[e.span[1] - 1][1]
            record.update(entity_group=kind, word=text[start:end], start=start, end=end,
                          word_start=e.span[0], word_end=e.span[1])
        records.append(record)
    return {"text": text, "explanations": records}


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
        print(json.dumps(as_record(text, explanations), ensure_ascii=False) if args.json
              else as_terminal(text, explanations))
    if args.html:
        atomic_write_text(Path(args.html), as_page(results))
        print(f"wrote {args.html}")
    return exit_code(None)
