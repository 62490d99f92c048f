"""Differentially private fine-tuning against the same fine-tuning without DP, in one run on the
same data, seed and threads: test score, the ε the accountant counted, and wall time.

    python benchmarks/dp_finetune.py                       # SST-2 subset at ε = 1, 8, 10⁷, no DP; WNUT-17 at ε = 8, no DP
    python benchmarks/dp_finetune.py --only wnut17 --sst2-train 4000

SST-2 comes from ../shared/data (the examples/params/sst2.yaml profile), its first `--sst2-train`
train sentences; WNUT-17 is the repo's default data. Each DP run trains the output layer only
(`finetune.dp.top_layers: 0`: embeddings, encoder and pooler frozen) with Poisson batches of 256.
ε = 10⁷ is the same run with next to no noise (the same trainable layer and clipping): the
comparison Opacus' anchor makes. "no DP" is the default recipe, every layer trained. Every run
scores dev on its first `--dev` rows after each epoch (the best epoch is kept), test on all of it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, params_for, prepare_data, timed, write_json  # noqa: E402
from tinynlp import modeling  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

# DP-SGD's noise is per step and grows with the trained parameters: few parameters, big batches, a
# large step (Li et al. 2022, "Large language models can be strong differentially private
# learners"). Measured here: training the top two encoder layers (3.7M parameters) under DP left
# every model at chance on these data sizes; the output layer alone learns.
DP_RECIPE = {"batch_size": 256, "learning_rate": 0.05, "epochs": 4, "patience": 4}
TOP_LAYERS = 0
NO_NOISE = 1e7   # ε so large that the noise is negligible: the same trainable layer, clipped, without privacy
DATASETS = {
    "sst2": {"base": ROOT / "examples/params/sst2.yaml", "metric": "accuracy", "epsilons": [1.0, 8.0, NO_NOISE, None]},
    "wnut17": {"base": ROOT / "params.yaml", "metric": "entity_f1", "epsilons": [8.0, None]},
}


def run_config(params_base: Path, workdir: Path, subset: int, epsilon: float | None, metric: str, dev_rows: int):
    from tasks.evaluate import run_evaluate
    from tasks.finetune import run_finetune

    finetune = {"max_train_samples": subset, "max_eval_samples": dev_rows}
    if epsilon is not None:
        finetune.update({**DP_RECIPE, "dp": {"enabled": True, "epsilon": epsilon, "delta": 1e-5, "max_grad_norm": 1.0,
                                             "top_layers": TOP_LAYERS}})
    params = params_for(workdir, {"finetune": finetune, "augment": {"enabled": False},
                                  "pretrain": {"enabled": False}}, base=params_base)
    times: dict = {}
    with timed(times, "finetune_seconds"):
        trained = run_finetune(params)
    scores = run_evaluate(params)
    dp = trained.get("dp", {})
    label = "no DP" if epsilon is None else ("no noise (ε = 10⁷)" if epsilon == NO_NOISE else epsilon)
    return {"epsilon_target": label, "epsilon_spent": dp.get("epsilon", "—") if epsilon != NO_NOISE else "—",
            "noise_multiplier": dp.get("noise_multiplier", "—"), f"test_{metric}": round(scores[f"test_{metric}"], 4),
            f"dev_{metric}": round(scores[f"dev_{metric}"], 4), "epochs_run": trained["epochs_run"],
            "batch_size": params.finetune.batch_size, "learning_rate": params.finetune.learning_rate,
            "trainable_parameters": trained["trainable_parameters"], **times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="sst2,wnut17", help="comma-separated: sst2, wnut17")
    parser.add_argument("--sst2-train", type=int, default=4000, help="SST-2 train sentences used")
    parser.add_argument("--dev", type=int, default=1000, help="dev rows scored after each epoch")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/dp_finetune.json"))
    args = parser.parse_args()
    configure_logging()
    threads = modeling.set_threads()
    results = {"threads": threads, "sst2_train_sentences": args.sst2_train, "dev_rows": args.dev,
               "dp_recipe": {**DP_RECIPE, "top_layers": TOP_LAYERS}, "datasets": {}}
    for name in args.only.split(","):
        spec = DATASETS[name]
        subset = args.sst2_train if name == "sst2" else 0
        rows = []
        with tempfile.TemporaryDirectory() as workdir:
            from tasks.pretrain import run_pretrain

            prepared = params_for(Path(workdir), {"augment": {"enabled": False}, "pretrain": {"enabled": False}},
                                  base=spec["base"])
            prepare_data(prepared)  # ingest once (and the base checkpoint in place): every config reads it
            run_pretrain(prepared)
            for epsilon in spec["epsilons"]:
                rows.append(run_config(spec["base"], Path(workdir), subset, epsilon, spec["metric"], args.dev))
                results["datasets"][name] = rows
                write_json(Path(args.out), results)
        plain = rows[-1]
        for row in rows:  # against no DP, measured in this run
            row["score_vs_no_dp"] = round(row[f"test_{spec['metric']}"] / plain[f"test_{spec['metric']}"], 3)
            row["time_vs_no_dp"] = round(row["finetune_seconds"] / plain["finetune_seconds"], 2)
        write_json(Path(args.out), results)
        print(f"\n{name} ({threads} threads)\n" + markdown_table(rows, list(rows[0])), flush=True)


if __name__ == "__main__":
    main()
