"""Leak check for `ingest.pii.mode: redact`: plant personal data in the raw splits, run the whole
Prefect flow (every stage, MLM pretraining from scratch included, so a tokenizer vocabulary is
learnt from the data), and look for every planted value in what the run left behind.

Planted: the seeded synthetic values of benchmarks/pii_redaction.py (every supported type, varied
formats), one per sentence, tokenised as a CoNLL file holds them (white space, edge punctuation
split off), tagged O, mixed into the first WNUT-17 sentences of each split. The raw files live in
`raw/`, outside every folder checked.

Checked: every file under data/, models/ (weights, ONNX graphs, tokenizer vocabularies, the card,
lineage), reports/ (Data Docs included), .dvc/cache/, the Prefect home (its SQLite database holds the
run's logs and artifacts) and the run's own stdout and stderr. Parquet files are decoded first (their
pages are compressed). A leak is a planted value, a run of 5+ letters and digits from one (8+ if only digits) that
occurs nowhere in the workspace before the run, or the value with white space, quotes and commas
taken out (found again when split into tokens and stored as a list), found in any of them.

    python benchmarks/pii_leak_check.py [--per-type 10] [--seed 0] [--keep DIR]
    python benchmarks/pii_leak_check.py --mode report    # the control: the same run without redaction
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, write_json  # noqa: E402
from benchmarks.pii_redaction import conll_tokens, synthetic_set  # noqa: E402
from benchmarks.task_runners import workspace  # noqa: E402
from tinynlp.pii import mask  # noqa: E402
from tinynlp.readers import read_conll  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

CHECKED = ("data", "models", "reports", ".dvc/cache", ".prefect")
FRAGMENT = re.compile(r"[A-Za-z0-9]{5,}")
WEIGHTS = (".onnx", ".safetensors", ".pt", ".bin")  # numbers, not text: squeezed, they would match digits by chance
WNUT_ROWS = {"train": 500, "dev": 120, "test": 120}
QUICK = {  # a tiny model, so the whole flow takes minutes: the check is about files, not quality
    "ingest": {"pii": {"mode": "redact"}},
    "pretrain": {"enabled": True, "mode": "scratch", "epochs": 1, "batch_size": 16,
                 "scratch": {"layers": 2, "hidden_size": 64, "heads": 2, "intermediate_size": 128,
                             "vocab_size": 2000}},
    "finetune": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3},
    "prune": {"epochs": 1, "max_train_samples": 100},
    "distill": {"epochs": 1, "max_train_samples": 100},
    "quantize": {"inc_sources": [], "calibration_samples": 16},
    "evaluate": {"latency_samples": 10, "warmup": 1, "timing_rounds": 1},
}


def planted_splits(per_type: int, seed: int) -> dict[str, list[tuple[list[str], list[str], str, str]]]:
    """split -> (tokens, tags, type, value) of each planted sentence, a third of the types' values each
    for dev and test, the rest for train."""
    examples = [e for e in synthetic_set(per_type, 0, seed) if e.type]
    splits: dict[str, list] = {"train": [], "dev": [], "test": []}
    for index, example in enumerate(examples):
        tokens, _ = conll_tokens(example, split_value=False)
        split = ("dev", "test", "train", "train")[index % 4]
        splits[split].append((tokens, ["O"] * len(tokens), example.type, example.text[example.start:example.end]))
    return splits


def write_raw(ws: Path, planted: dict) -> None:
    for split, rows in planted.items():
        clean = read_conll(str(ROOT / f"data/wnut17/{split}.conll"), "bio")[: WNUT_ROWS[split]]
        blocks = ["\n".join(f"{t}\t{g}" for t, g in zip(s.tokens, s.tags)) for s in clean]
        blocks += ["\n".join(f"{t}\tO" for t in tokens) for tokens, _, _, _ in rows]
        (ws / "raw").mkdir(exist_ok=True)
        (ws / f"raw/{split}.conll").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def readable(path: Path) -> str:
    """A file as text to search: parquet decoded (its pages are compressed), anything else as bytes."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return str(pq.read_table(path).to_pylist())
    try:
        import pyarrow.parquet as pq

        if path.read_bytes()[:4] == b"PAR1":  # DVC's cache names files by hash, without suffix
            return str(pq.read_table(path).to_pylist())
    except Exception:  # noqa: BLE001 - not parquet after all: search the bytes
        pass
    return path.read_bytes().decode("latin-1")


def squeeze(text: str) -> str:
    """Without white space, quotes, commas and brackets: a value split into tokens and stored as a
    list (`['4111', '1111', ...]`) is found again. Other punctuation stays, so digits of unrelated
    fields (timestamps in the Prefect database) do not run together into a false match."""
    return re.sub(r"[\s'\",\[\]]", "", text)


def needles(planted: dict, before: str) -> list[tuple[str, str, str, bool]]:
    """(type, value, what to search for, in squeezed text?): the value; its 5+ character runs absent
    before the run; and its squeezed form when it has 10 characters or more."""
    out = []
    for rows in planted.values():
        for _, _, kind, value in rows:
            out.append((kind, value, value.lower(), False))
            # digits alone need 8: shorter runs of digits recur by chance (timestamps, sizes, ids)
            out += [(kind, value, f.lower(), False) for f in FRAGMENT.findall(value) if f.lower() not in before
                    and (len(f) >= 8 or not f.isdigit())]
            if len(squeeze(value.lower())) >= 10:
                out.append((kind, value, squeeze(value.lower()), True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-type", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="build the workspace here and keep it")
    parser.add_argument("--mode", default="redact", choices=["redact", "report"],
                        help="ingest.pii.mode; report is the control, where every planted value should be found")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.out = args.out or str(ROOT / f"reports/benchmarks/pii_leak_check_{args.mode}.json")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="leak-"))
    ws = workspace(base / "ws", {})
    quick = {**QUICK, "ingest": {"pii": {"mode": args.mode}}}
    for section, values in quick.items():
        import yaml

        params = yaml.safe_load((ws / "params.yaml").read_text())
        for key, value in values.items():
            params[section][key] = {**params[section][key], **value} if isinstance(value, dict) else value
        params["paths"].update(train="raw/train.conll", dev="raw/dev.conll", test="raw/test.conll")
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    planted = planted_splits(args.per_type, args.seed)
    before = "".join(readable(p) for p in ws.rglob("*") if p.is_file() and "raw" not in p.parts).lower()
    write_raw(ws, planted)
    env = {**os.environ, "PREFECT_HOME": str(ws / ".prefect"), "PYTHONPATH": str(ws)}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "flows.pipeline"], cwd=ws, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"the flow failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    searched = {f"{root}/{p.relative_to(ws / root)}": p for root in CHECKED if (ws / root).exists()
                for p in sorted((ws / root).rglob("*")) if p.is_file()}
    texts = {name: readable(path).lower() for name, path in searched.items()}
    texts["flow stdout"], texts["flow stderr"] = run.stdout.lower(), run.stderr.lower()
    squeezed = {name: squeeze(text) for name, text in texts.items() if not name.endswith(WEIGHTS)}
    leaks, context = set(), {}
    for kind, value, needle, squeeze_it in needles(planted, before):
        for where, text in (squeezed if squeeze_it else texts).items():
            if needle in text:
                leaks.add((kind, mask(value), where))
                at = text.index(needle)  # what surrounds it, the match masked: to tell a leak from chance
                context[f"{mask(value)} in {where}"] = (text[max(0, at - 50):at] + mask(needle)
                                                        + text[at + len(needle):at + len(needle) + 50])
    leaks = sorted(leaks)
    counts = {kind: sum(1 for rows in planted.values() for r in rows if r[2] == kind)
              for kind in sorted({r[2] for rows in planted.values() for r in rows})}
    rows = [{"type": kind, "planted": n, "leaked values": len({v for k, v, _ in leaks if k == kind})}
            for kind, n in counts.items()]
    result = {"mode": args.mode, "per_type": args.per_type, "seed": args.seed, "files_checked": len(searched),
              "folders": list(CHECKED), "flow_seconds": round(seconds, 1), "planted": counts,
              "leaks": [{"type": k, "value": v, "where": w, "context": context[f"{v} in {w}"]} for k, v, w in leaks],
              "table": rows}
    write_json(Path(args.out), result)
    print(markdown_table(rows, list(rows[0])))
    where = sorted({w.split("/")[0] + ("/" + w.split("/")[1] if "/" in w else "") for _, _, w in leaks})
    print(f"\n{len(searched)} files checked under {', '.join(CHECKED)}, and the flow's output; "
          f"{len(leaks)} leak(s) of {len({v for _, v, _ in leaks})} value(s)" + (f", in {', '.join(where)}" if where else ""))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
