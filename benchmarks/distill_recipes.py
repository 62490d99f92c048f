"""Distillation recipes side by side, over seeds, in one run: per seed one teacher is fine-tuned
(the `finetune` section as it stands, with that seed), then a student is distilled from it per
recipe (overrides of the `distill` section) and both are scored on test. Per row: the student's
test and dev score, its share of its own teacher's test score, the transfer set's rows, the
distillation time and the student's speed-up; then per recipe the mean and spread over seeds.

    python benchmarks/distill_recipes.py [--params FILE] [--seeds 42,1,2]
        [--recipes default,soft_targets,...] [--corpus ../shared/data/corpus/webtext.txt] [--set distill.epochs=6]

Recipes (see RECIPES): `default` is the params file's distill section; each other one changes a
few keys of it. `augmented` and `corpus` are the transfer set's two sources. An interrupted run
resumes: rows of an earlier run with the same base and params are kept.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, base_params, params_for, prepare_data, timed, write_json  # noqa: E402
from benchmarks.finetune_options import merge  # noqa: E402
from benchmarks.finetune_vs_hf import parse_sets  # noqa: E402
from tinynlp import modeling  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

RECIPES: dict[str, dict] = {
    "default": {},
    "top_layers": {"layer_spread": "top"},              # 6 -> 3 keeps 1, 3, 5 (the default before 2026-12-07)
    "bottom_layers": {"layer_spread": "bottom"},        # 6 -> 3 keeps 0, 2, 4 (the default since)
    "soft_targets": {"alpha": 0.1},                    # mostly the teacher's distribution, little of the labels
    "temperature_1": {"temperature": 1.0},
    "lr_3e-4": {"learning_rate": 3.0e-4},
    "epochs_8": {"epochs": 8},
    "hidden_loss": {"hidden_loss_weight": 1.0},
    "ffn_fifth": {"neurons_fraction": 0.2},             # a narrower student: a fifth of each FFN removed
    "ffn_third": {"neurons_fraction": 0.33},            # a third
    "ffn_half": {"neurons_fraction": 0.5},
    "ffn_half_heads_quarter": {"neurons_fraction": 0.5, "heads_fraction": 0.25},
    "augmented": {"transfer": {"augmented_copies": 1, "corpus_texts": 0}},
    "corpus": {"transfer": {"augmented_copies": 0, "corpus_texts": 3000}},
}


def run_seed(seed: int, recipes: list[str], base: dict, base_kwargs: dict, corpus: str, done: set) -> Iterator[dict]:
    """One teacher for `seed`, then a student per recipe not in `done`."""
    from tasks.distill import run_distill
    from tasks.evaluate import run_evaluate
    from tasks.finetune import run_finetune
    from tasks.pretrain import run_pretrain

    seeded = merge(base, {"finetune": {"seed": seed}})
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        params = params_for(Path(workdir), merge(seeded, {"distill": {"enabled": False}}), **base_kwargs)
        prepare_data(params)
        run_pretrain(params)
        teacher_times: dict = {}
        with timed(teacher_times, "teacher_seconds"):
            run_finetune(params)
        for name in recipes:
            if (name, seed) in done:
                continue
            distill = {"seed": seed, **RECIPES[name]}
            overrides = merge(seeded, {"distill": distill})
            if distill.get("transfer", {}).get("corpus_texts"):  # a corpus outside the workspace: allowed by name
                allowed = yaml.safe_load(Path(base_kwargs["base"]).read_text())["paths"]["allow_outside"]
                overrides = merge(overrides, {"paths": {"corpus": corpus, "allow_outside": [
                    *allowed, workdir, str(Path(corpus).parent)]}})
            params = params_for(Path(workdir), overrides, **base_kwargs)
            times: dict = {}
            with timed(times, "distill_seconds"):
                distilled = run_distill(params)
            scores = run_evaluate(params)["variants"]
            teacher, student = scores["finetune"]["test_score"], scores["distill"]["test_score"]
            rows.append({"recipe": name, "seed": seed, "student_test": student, "teacher_test": teacher,
                         "share_of_teacher": round(student / teacher, 4),
                         "student_dev": distilled.get(next(k for k in distilled if k.startswith("dev_"))),
                         "epochs_run": distilled["epochs_run"], "augmented_rows": distilled["transfer"]["augmented"],
                         "corpus_texts": distilled["transfer"]["corpus"], **times, **teacher_times,
                         "speedup": scores["distill"]["speedup"]})
            print(markdown_table(rows, list(rows[0])), flush=True)
            yield rows[-1]


def summary(rows: list[dict], reference: str = "default") -> list[dict]:
    """Per recipe: mean and spread of the student's test score and of its share of the teacher's,
    mean distillation time, and the difference to the `reference` recipe's mean share on the same
    seeds (a recipe run on one seed is compared with the reference on that seed)."""
    by_recipe: dict[str, list[dict]] = {}
    for row in rows:
        by_recipe.setdefault(row["recipe"], []).append(row)
    reference_share = {r["seed"]: r["share_of_teacher"] for r in by_recipe.get(reference, [])}
    out = []
    for name, group in by_recipe.items():
        share = [r["share_of_teacher"] for r in group]
        paired = [r["share_of_teacher"] - reference_share[r["seed"]] for r in group if r["seed"] in reference_share]
        out.append({"recipe": name, "seeds": len(group),
                    "student_test_mean": round(statistics.fmean(r["student_test"] for r in group), 4),
                    "teacher_test_mean": round(statistics.fmean(r["teacher_test"] for r in group), 4),
                    "share_mean": round(statistics.fmean(share), 4),
                    "share_sd": round(statistics.stdev(share), 4) if len(share) > 1 else None,
                    "student_dev_mean": round(statistics.fmean(r["student_dev"] for r in group), 4),
                    "distill_seconds_mean": round(statistics.fmean(r["distill_seconds"] for r in group), 1),
                    "speedup_mean": round(statistics.fmean(r["speedup"] for r in group), 2),
                    f"share_vs_{reference}_points": round(100 * statistics.fmean(paired), 2) if paired else None})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, help="params file to start from (default: the repo's params.yaml)")
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--recipes", default="top_layers,bottom_layers", help=f"from: {', '.join(RECIPES)}")
    parser.add_argument("--reference", default="top_layers", help="the recipe each other one is compared with")
    parser.add_argument("--corpus", default="../shared/data/corpus/webtext.txt",
                        help="unlabelled text for the corpus recipe (paths.corpus)")
    parser.add_argument("--set", action="append", default=[], help="override every run, e.g. distill.epochs=6")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/distill_recipes.json"))
    args = parser.parse_args()
    recipes = args.recipes.split(",")
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {unknown}: choose from {', '.join(RECIPES)}")
    configure_logging()
    threads = modeling.set_threads()
    # the compression stages other than distill are not needed to score a student
    base = merge(parse_sets(args.set), {"prune": {"unstructured": {"enabled": False}, "structured": {"enabled": False}},
                                        "quantize": {"sources": []}})
    base_kwargs = base_params(args, ROOT / "params.yaml")
    out = Path(args.out)
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    same = earlier.get("base_overrides") == base and earlier.get("params") == str(args.params)
    rows = earlier.get("rows", []) if same else []
    done = {(r["recipe"], r["seed"]) for r in rows}
    corpus = str(Path(args.corpus).resolve())
    for seed in [int(s) for s in args.seeds.split(",")]:
        if all((name, seed) in done for name in recipes):
            continue
        for row in run_seed(seed, recipes, base, base_kwargs, corpus, done):
            rows.append(row)
            write_json(out, {"threads": threads, "params": str(args.params), "base_overrides": base,
                             "recipes": {name: RECIPES[name] for name in recipes}, "rows": rows,
                             "summary": summary(rows, args.reference)})
    print(markdown_table(summary(rows, args.reference), list(summary(rows, args.reference)[0])))


if __name__ == "__main__":
    main()
