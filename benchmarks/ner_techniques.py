"""Each NER technique on and off, over several seeds, side by side in one run: the plain
run_ner-style recipe, our default recipe, and our recipe with one option changed. Per row: test
and dev entity F1, wall time (fine-tuning + evaluation; the plain recipe's whole run), subword
tokens per test sentence (what an option adds to every inference) and the fp32 model's p50
latency at batch 1, and for a model with word shapes its test F1 when fed token types 0 (what a
plain pipeline feeds); then the mean and spread of each recipe over the seeds.

    python benchmarks/ner_techniques.py [--params examples/params/wikigold.yaml] [--seeds 42,1,2]
        [--recipes plain,default,casing,shape] [--out reports/benchmarks/ner_techniques/wnut17.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, base_params, params_for, prepare_data, timed, write_json  # noqa: E402
from benchmarks.finetune_options import merge  # noqa: E402
from benchmarks.finetune_vs_hf import parse_sets, plain_recipe  # noqa: E402
from tinynlp import modeling  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

# one option changed from the params file's recipe; "plain" is the run_ner-style recipe
RECIPES = {
    "default": {},
    "casing": {"finetune": {"casing": "markers"}},
    "shape": {"finetune": {"casing": "shape"}},
    "shape_dropout": {"finetune": {"casing": "shape", "shape_dropout": 0.1}},
    "context": {"finetune": {"context": {"tokens": 64}}},          # FLERT's 64 subwords a side
    "context32": {"finetune": {"context": {"tokens": 32}}},
    "casing_context": {"finetune": {"casing": "markers", "context": {"tokens": 64}}},
    "no_casing": {"finetune": {"casing": "none"}},
    "argmax": {"finetune": {"decoding": "argmax"}},
    "llrd": {"finetune": {"layer_lr_decay": 0.8}},
    "llrd_lr2e4": {"finetune": {"layer_lr_decay": 0.8, "learning_rate": 2.0e-4}},
    "head_lr5": {"finetune": {"head_lr_scale": 5.0}},
    "llrd_head5": {"finetune": {"layer_lr_decay": 0.8, "head_lr_scale": 5.0}},
    "ema99": {"finetune": {"ema_decay": 0.99}},                     # weight average, about the last 100 steps
    "ema995": {"finetune": {"ema_decay": 0.995}},                   # about the last 200 (an epoch of WNUT-17)
    "augment": {"augment": {"enabled": True}},                      # one copy per train row (Dai & Adel)
    "augment_2ep": {"augment": {"enabled": True}, "finetune": {"epochs": 2}},   # about the default's steps
}


def tokens_per_sentence(params) -> float:
    """Mean subword tokens per test sentence as the fine-tuned model is fed them (markers included)."""
    from tinynlp.heads import head_for
    from tinynlp.model_dir import load_spec
    from tinynlp.splits import read_split

    spec = load_spec(params.paths.model)
    tokenizer = modeling.load_tokenizer(params.paths.model)
    features = head_for(spec.task).features(head_for(spec.task).encode(tokenizer, read_split(params.paths.ingested,
                                                                                              "test"), spec))
    return sum(len(f["input_ids"]) for f in features) / len(features)


def test_f1_without_shapes(params) -> float | None:
    """A word-shape model's test entity F1 when fed token types 0, as a plain pipeline (Optimum's,
    transformers') feeds it; None for a model without shapes."""
    from tasks.evaluate import score_without_shapes
    from tinynlp.heads import head_for
    from tinynlp.inference import TorchRunner
    from tinynlp.model_dir import load_model
    from tinynlp.splits import read_split

    model, spec = load_model(params.paths.model)
    if spec.casing != "shape":
        return None
    tokenizer, test = modeling.load_tokenizer(params.paths.model), read_split(params.paths.ingested, "test")
    return score_without_shapes(TorchRunner(model.eval()), spec, head_for(spec.task).encode(tokenizer, test, spec),
                                test, params.evaluate.batch_size, tokenizer.pad_token_id)


def run_recipe(name: str, seed: int, base: dict, base_kwargs: dict) -> dict:
    from tasks.evaluate import run_evaluate
    from tasks.finetune import run_finetune
    from tasks.pretrain import run_pretrain

    overrides = merge(merge(base, {"finetune": {"seed": seed}}), RECIPES.get(name, {}))
    with tempfile.TemporaryDirectory() as workdir:
        params = params_for(Path(workdir), overrides, **base_kwargs)
        prepare_data(params)
        run_pretrain(params)
        times: dict = {}
        if name == "plain":
            with timed(times, "seconds"):
                scores = plain_recipe(params, seed)
            return {"recipe": name, "seed": seed, "test_f1": round(scores["entity_f1"], 4), "dev_f1": None, **times,
                    "tokens_per_sentence": None, "latency_ms_p50": None, "test_f1_types_0": None}
        with timed(times, "seconds"):
            run_finetune(params)
            scores = run_evaluate(params)
        return {"recipe": name, "seed": seed, "test_f1": round(scores["test_entity_f1"], 4),
                "dev_f1": round(scores["dev_entity_f1"], 4), **times,
                "tokens_per_sentence": round(tokens_per_sentence(params), 2),
                "latency_ms_p50": scores["variants"]["finetune"]["latency_ms_p50"],
                "test_f1_types_0": test_f1_without_shapes(params)}


def summary(rows: list[dict]) -> list[dict]:
    """Per recipe: mean and standard deviation of test F1 over the seeds, mean dev F1 and time,
    and the difference to the plain recipe's and the default's mean."""
    by_recipe: dict[str, list[dict]] = {}
    for row in rows:
        by_recipe.setdefault(row["recipe"], []).append(row)

    def mean(values):
        values = [v for v in values if v is not None]
        return round(statistics.fmean(values), 4) if values else None

    out = []
    for name, group in by_recipe.items():
        f1 = [r["test_f1"] for r in group]
        out.append({"recipe": name, "seeds": len(group), "test_f1_mean": mean(f1),
                    "test_f1_sd": round(statistics.stdev(f1), 4) if len(f1) > 1 else None,
                    "dev_f1_mean": mean(r["dev_f1"] for r in group), "seconds_mean": mean(r["seconds"] for r in group),
                    "tokens_per_sentence": mean(r["tokens_per_sentence"] for r in group),
                    "latency_ms_p50": mean(r["latency_ms_p50"] for r in group),
                    "test_f1_types_0_mean": mean(r.get("test_f1_types_0") for r in group)})
    for reference in ("plain", "default"):
        ref = next((s for s in out if s["recipe"] == reference), None)
        for s in out:
            s[f"vs_{reference}_points"] = (round(100 * (s["test_f1_mean"] - ref["test_f1_mean"]), 2)
                                           if ref else None)
            s[f"time_vs_{reference}"] = round(s["seconds_mean"] / ref["seconds_mean"], 2) if ref else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, help="params file to start from (default: the repo's params.yaml)")
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--recipes", default="plain,default,casing,shape", help=f"plain, {', '.join(RECIPES)}")
    parser.add_argument("--set", action="append", default=[], help="override every recipe, e.g. finetune.epochs=3")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/ner_techniques/wnut17.json"))
    args = parser.parse_args()
    unknown = [r for r in args.recipes.split(",") if r != "plain" and r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {unknown}: choose from plain, {', '.join(RECIPES)}")
    configure_logging()
    threads = modeling.set_threads()
    base, base_kwargs = parse_sets(args.set), base_params(args, ROOT / "params.yaml")
    out = Path(args.out)
    # rows of an earlier run with the same base and recipes are kept: an interrupted run resumes
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    same = earlier.get("base_overrides") == base and earlier.get("params") == str(args.params)
    rows = earlier.get("rows", []) if same else []
    done = {(r["recipe"], r["seed"]) for r in rows}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in args.recipes.split(","):
            if (name, seed) in done:
                continue
            rows.append(run_recipe(name, seed, base, base_kwargs))
            write_json(out, {"threads": threads, "params": str(args.params), "base_overrides": base, "rows": rows,
                             "summary": summary(rows)})
            print(markdown_table(rows, list(rows[0])), flush=True)
    print(markdown_table(summary(rows), list(summary(rows)[0])))


if __name__ == "__main__":
    main()
