"""`dvc.yaml`, generated from the stage table (tasks/stages.py) and the code itself.

    python -m tasks.dvc_yaml            write dvc.yaml
    python -m tasks.dvc_yaml --check    exit 1, naming each stage and file or key, if it is stale

A stage's code deps are its module and every project module it imports, transitively (imports
inside functions too), read from the source: a contributor who adds an import cannot forget to
declare it. Per-file deps rather than whole packages: generated lists cost nothing to keep exact,
and an edit to one core module re-runs only the stages that use it."""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.stages import STAGES, Stage
from tinynlp.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
DVC_YAML = "dvc.yaml"


@dataclass(frozen=True)
class Plot:
    name: str
    template: str
    title: str
    x: str
    y: dict[str, list[str]]


def _report(stage: str, name: str) -> str:
    return f"${{paths.reports}}/{stage}/{name}"


PLOTS = (
    Plot("mlm_perplexity", "linear", "Held-out MLM perplexity per epoch (pretrain; epoch 0 is before training)",
         "epoch", {_report("pretrain", "history.json"): ["dev_perplexity"]}),
    Plot("dev_metric_per_epoch", "linear", "Dev metric (entity F1 or accuracy) per epoch (finetune)",
         "epoch", {_report("finetune", "history.json"): ["dev_score"]}),
    Plot("latency_vs_quality", "scatter", "Test metric against batch-1 p50 latency, one point per variant (evaluate)",
         "latency_ms_p50", {_report("evaluate", "variants.json"): ["test_score"]}),
    Plot("prune_dev_per_step", "linear", "Dev metric after each unstructured pruning step and its recovery (prune)",
         "step", {_report("prune", "history.json"): ["dev_score"]}),
    Plot("distill_dev_per_epoch", "linear", "Student dev metric per epoch (distill)",
         "epoch", {_report("distill", "history.json"): ["dev_score"]}),
    Plot("loss_per_epoch", "linear", "Train and dev loss per epoch (finetune)",
         "epoch", {_report("finetune", "history.json"): ["train_loss", "dev_loss"]}),
    Plot("confusion", "confusion", "Gold against predicted entity type (overlapping spans) or label, shipped model, "
         "test (evaluate)", "predicted", {_report("evaluate", "confusion.json"): ["actual"]}),
    Plot("calibration", "linear", "Reliability (accuracy against mean confidence per bin), shipped model, test "
         "(evaluate)", "confidence", {_report("evaluate", "calibration.json"): ["accuracy"]}),
)
# pictures the evaluate stage draws itself, shown as they are
IMAGES = (_report("evaluate", "confusion.png"), _report("evaluate", "calibration.png"))

# The model registry: the promoted model as a DVC artifact, named in params (retrain.model_name).
# The retraining flow registers its versions and stages as GTO git tags, so `gto show` lists them
# and `dvc artifacts get . <name> --rev vN.0.0` (or `--stage prod`) fetches one.
ARTIFACT = {"name": "${retrain.model_name}", "type": "model", "path": "${paths.promoted}",
            "desc": "the model the evaluate gate promoted (ONNX graph, tokenizer, pipeline.json, card, lineage.json)"}


def _artifact_lines() -> list[str]:
    return ["", "# The model registry (docs/lineage.md): versions and stages are GTO git tags, `gto show` lists them.",
            "artifacts:", f"  {ARTIFACT['name']}:", f"    type: {ARTIFACT['type']}", f"    path: {ARTIFACT['path']}",
            f"    desc: {ARTIFACT['desc']}"]


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The project file that defines `module` (a package: its __init__.py), or None outside the project."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST, package: str) -> set[str]:
    """Every module an import statement names, anywhere in the file; `from a import b` counts
    `a.b` too (b may be a module)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".strip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _has_code(tree: ast.Module) -> bool:
    body = tree.body[1:] if tree.body and isinstance(tree.body[0], ast.Expr) else tree.body
    return any(not (isinstance(n, ast.ImportFrom) and n.module == "__future__") for n in body)


def code_deps(module: str, root: Path = ROOT) -> list[str]:
    """`module`'s file and every project file it imports, transitively, relative to `root`. A
    package's __init__.py counts when it holds code (importing a submodule runs it)."""
    seen: dict[Path, ast.Module] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # the packages above run too
            prefix = ".".join(parts[:depth])
            path = module_file(prefix, root)
            if path is None or path in seen:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            seen[path] = tree
            package = prefix if path.name == "__init__.py" else prefix.rpartition(".")[0]
            pending.extend(_imported(tree, package))
    return sorted(str(path.relative_to(root)) for path, tree in seen.items()
                  if path.name != "__init__.py" or _has_code(tree))


def _out(path: str, cache: bool, note: str) -> list[str]:
    lines = [f"      - {path}:" + (f"   # {note}" if note else ""), ]
    if not cache:
        lines.append("          cache: false")
    lines.append("          persist: true")
    return lines


def _stage_lines(stage: Stage, root: Path) -> list[str]:
    lines = [f"  {stage.name}:   # {stage.summary}", f"    cmd: python -m tasks {stage.name}", "    deps:"]
    lines += [f"      - {dep}" for dep in (*stage.deps, *code_deps(stage.module, root))]
    lines += ["    params:"] + [f"      - {key}" for key in stage.params]
    for kind, outs in (("outs", [o for o in stage.outs if not o.metric]), ("metrics", [o for o in stage.outs
                                                                                    if o.metric])):
        if outs:
            lines.append(f"    {kind}:")
            for out in outs:
                lines += _out(out.path, out.cache, out.note)
    return lines


def _plot_lines(plot: Plot) -> list[str]:
    lines = [f"  - {plot.name}:", f"      template: {plot.template}", f"      title: {plot.title}",
             f"      x: {plot.x}", "      y:"]
    for path, fields in plot.y.items():
        lines.append(f"        {path}: [{', '.join(fields)}]")
    return lines


def render(root: Path = ROOT) -> str:
    lines = ["# GENERATED by `python -m tasks.dvc_yaml` from the stage table in tasks/stages.py: edit that",
             "# table (or the code: deps are the imports), then regenerate; a test fails while this file is",
             "# stale. Each stage has the name of its params.yaml section, its module (tasks/<stage>.py), its",
             "# stage function (run_<stage>) and its Prefect task. Outputs persist, so a failed run never",
             "# deletes the last good artifact; stages write them atomically.", "stages:"]
    for stage in STAGES:
        lines += _stage_lines(stage, root) + [""]
    lines += ["# The plots `dvc plots show/diff` draw. Stage outputs are not declared as plots themselves:",
              "# DVC would draw each file a second time with guessed axes.", "plots:"]
    for plot in PLOTS:
        lines += _plot_lines(plot)
    lines += [f"  - {image}" for image in IMAGES]
    return "\n".join(lines + _artifact_lines()) + "\n"


def _entries(items) -> list[str]:
    return [next(iter(i)) if isinstance(i, dict) else str(i) for i in items or []]


def stale(committed: dict, root: Path = ROOT) -> list[str]:
    """What the committed dvc.yaml (parsed) lacks or has beyond the stage table and the imports,
    one line per stage and file or key."""
    expected = yaml.safe_load(render(root))["stages"]
    stages = committed.get("stages") or {}
    problems = [f"stage {name}: missing from dvc.yaml" for name in expected if name not in stages]
    problems += [f"stage {name}: in dvc.yaml but not in the stage table" for name in stages if name not in expected]
    for name in (n for n in expected if n in stages):
        for field, what in (("deps", "dep"), ("params", "params key"), ("outs", "out"), ("metrics", "metrics file")):
            want, have = _entries(expected[name].get(field)), _entries(stages[name].get(field))
            problems += [f"stage {name}: dvc.yaml does not declare {what} {item}" + (
                ", which the stage imports" if field == "deps" and item.endswith(".py") else "")
                for item in want if item not in have]
            problems += [f"stage {name}: dvc.yaml declares {what} {item}, which the stage table and imports do not"
                         for item in have if item not in want]
        if stages[name].get("cmd") != expected[name]["cmd"]:
            problems.append(f"stage {name}: cmd is {stages[name].get('cmd')!r}, not {expected[name]['cmd']!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.dvc_yaml", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that dvc.yaml is up to date")
    args = parser.parse_args(argv)
    path = ROOT / DVC_YAML
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != render():
            problems = stale(yaml.safe_load(current) or {})
            print(f"{DVC_YAML} is stale; run `python -m tasks.dvc_yaml`:", file=sys.stderr)
            print("\n".join(f"  - {p}" for p in problems) or "  - (formatting only)", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(path, render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
