"""The stage table: the one declaration of the DAG. For each stage, the params it reads, the data it
reads and the files it writes. `dvc.yaml` is generated from it (`python -m tasks.dvc_yaml`), the
Prefect flow takes its task dependencies from it, and `run_stage` hands each stage a view of the
params that holds only what the stage declares, so a read it does not declare fails at once."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tinynlp.config import Params
from tinynlp.errors import UndeclaredParamError


@dataclass(frozen=True)
class Output:
    """One file or folder a stage writes. `path` is as dvc.yaml writes it (`${paths.x}/...`).
    Models and datasets go to DVC's cache; reports (`cache=False`) are committed to git."""

    path: str
    cache: bool = True
    metric: bool = False   # a `dvc metrics` file
    note: str = ""         # a comment beside it in dvc.yaml


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str                 # one line: what the stage does
    params: tuple[str, ...]      # params.yaml sections, or `section.key`, that the stage reads
    deps: tuple[str, ...]        # data it reads (dvc.yaml paths)
    outs: tuple[Output, ...]

    @property
    def module(self) -> str:
        return f"tasks.{self.name}"

    @property
    def function(self) -> Callable[[Params], dict]:
        """`tasks.<name>.run_<name>`, imported on demand (so `--help` stays fast)."""
        return getattr(importlib.import_module(self.module), f"run_{self.name}")


def _report(stage: str, name: str, metric: bool = False, note: str = "") -> Output:
    return Output(f"${{paths.reports}}/{stage}/{name}", cache=False, metric=metric, note=note)


_HISTORY = "drawn by the top-level plots"
_TRAINING = ("execution.device", "execution.precision")
_BASE = "pretrain.checkpoint"   # recorded in each model's pipeline.json; augment's synonym source
STAGES: tuple[Stage, ...] = (
    Stage("ingest", "read the raw splits and validate them with Great Expectations",
          params=("ingest",),
          deps=("${paths.train}", "${paths.dev}", "${paths.test}", "${paths.batches}"),
          outs=(Output("${paths.ingested}"), Output("${paths.reports}/ingest/data_docs"),
                _report("ingest", "validation.json"), _report("ingest", "metrics.json", metric=True))),
    Stage("augment", "add augmented copies of the training rows (off: a byte copy)",
          params=("augment", "ingest", _BASE),
          deps=("${paths.ingested}",),
          outs=(Output("${paths.augmented}"), _report("augment", "report.md"),
                _report("augment", "metrics.json", metric=True))),
    Stage("pretrain", "masked-language-model pretraining of the encoder (off: the checkpoint, checked)",
          params=("pretrain", *_TRAINING),
          deps=("${paths.corpus}",),
          outs=(Output("${paths.pretrained}"), Output("${paths.tokenizer}"),
                _report("pretrain", "history.json", note=_HISTORY), _report("pretrain", "metrics.json", metric=True))),
    Stage("finetune", "fine-tune the encoder for NER or text classification",
          params=("finetune", _BASE, *_TRAINING),
          deps=("${paths.ingested}", "${paths.augmented}", "${paths.pretrained}"),
          outs=(Output("${paths.model}"), _report("finetune", "history.json", note=_HISTORY),
                _report("finetune", "metrics.json", metric=True))),
    Stage("prune", "magnitude pruning and head/FFN pruning, each with recovery training",
          params=("prune", "finetune", _BASE, *_TRAINING),   # finetune: data limits, input settings
          deps=("${paths.ingested}", "${paths.augmented}", "${paths.model}"),
          outs=(Output("${paths.pruned}"), _report("prune", "history.json", note=_HISTORY),
                _report("prune", "metrics.json", metric=True))),
    Stage("distill", "distil a student with half the layers from the fine-tuned teacher",
          params=("distill", "finetune", "augment",  # augment: distill.transfer.augmented_copies' operations
                  "evaluate.batch_size", _BASE, *_TRAINING),
          deps=("${paths.ingested}", "${paths.augmented}", "${paths.model}",
                "${paths.corpus}"),   # distill.transfer.corpus_texts samples its unlabelled text
          outs=(Output("${paths.distilled}"), _report("distill", "history.json", note=_HISTORY),
                _report("distill", "metrics.json", metric=True))),
    Stage("quantize", "ONNX export, INT8 candidates (ONNX Runtime, Intel Neural Compressor), accuracy-aware pick",
          params=("quantize", "evaluate.batch_size", "evaluate.threads", "finetune.seed"),
          deps=("${paths.ingested}", "${paths.model}", "${paths.pruned}", "${paths.distilled}"),
          outs=(Output("${paths.quantized}"), _report("quantize", "candidates.json"),
                _report("quantize", "sensitivity.json"), _report("quantize", "metrics.json", metric=True))),
    Stage("evaluate", "score, time and size every variant, analyse their errors; the gate promotes one",
          params=("evaluate", "quantize.opset", "drift", "ingest.pii", _BASE),   # drift: the card's thresholds;
                                                                                  # ingest.pii: examples masked
          deps=("${paths.ingested}", "${paths.model}", "${paths.pruned}", "${paths.distilled}", "${paths.quantized}",
                "${paths.reports}/ingest/validation.json"),         # the lineage record's validation summary
          outs=(Output("${paths.promoted}"), _report("evaluate", "scores.json"), _report("evaluate", "metrics.md"),
                _report("evaluate", "variants.json", note=_HISTORY),
                *(_report("evaluate", name) for name in ("error_analysis.json", "error_analysis.md",
                                                         "worst_examples.md", "explanations.md", "explanations.html",
                                                         "lineage.json")),
                *(_report("evaluate", name, note=_HISTORY) for name in ("confusion.json", "calibration.json",
                                                                        "confusion.png", "calibration.png")),
                _report("evaluate", "metrics.json", metric=True))),
)
STAGE_ORDER: tuple[str, ...] = tuple(stage.name for stage in STAGES)
_BY_NAME = {stage.name: stage for stage in STAGES}


def stage(name: str) -> Stage:
    if name not in _BY_NAME:
        raise KeyError(f"unknown stage '{name}'; stages: {', '.join(STAGE_ORDER)}")
    return _BY_NAME[name]


def resolve(path: str, params: Params) -> Path:
    """A dvc.yaml path with its `${paths.x}` filled in from params."""
    for key, value in params.paths.model_dump().items():
        path = path.replace(f"${{paths.{key}}}", str(value))
    return Path(path)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def upstream(params: Params) -> dict[str, list[str]]:
    """For each stage, the stages it waits for: those that write something it reads, as DVC sees
    it, from the same paths (so `paths.corpus: data/ingest` puts pretrain after ingest, a text file
    does not)."""
    def reads_from(reader: Stage, writer: Stage) -> bool:
        return any(_within(resolve(dep, params), resolve(out.path, params)) for dep in reader.deps
                   for out in writer.outs)

    direct = {s.name: [w.name for w in STAGES if w is not s and reads_from(s, w)] for s in STAGES}

    def before(name: str) -> set[str]:  # every stage that runs before `name`
        return {u for d in direct[name] for u in (d, *before(d))}

    # without the edges that a longer path implies (finetune reads ingest's splits, but waits for
    # augment, which waits for ingest): the graph the Prefect UI draws stays the DAG's shape
    return {name: [d for d in ups if not any(d in before(o) for o in ups if o != d)] for name, ups in direct.items()}


class _Section:
    """One params section, of which a stage declares only some keys."""

    def __init__(self, section: Any, stage: str, name: str, keys: set[str]):
        self._section, self._stage, self._name, self._keys = section, stage, name, keys

    def __getattr__(self, key: str):
        if key not in self._keys:
            raise UndeclaredParamError(_undeclared(self._stage, f"{self._name}.{key}"))
        return getattr(self._section, key)


class StageParams:
    """Params as one stage sees them: `paths` and the sections or keys it declares. Reading any
    other raises UndeclaredParamError naming the stage and the key."""

    def __init__(self, params: Params, stage: Stage):
        self._params, self._stage = params, stage.name
        self._declared: dict[str, set[str] | None] = {}   # section -> its declared keys (None: all)
        for item in stage.params:
            section, _, key = item.partition(".")
            if key and self._declared.get(section, set()) is not None:
                self._declared.setdefault(section, set()).add(key)
            else:
                self._declared[section] = None

    def __getattr__(self, name: str):
        if name == "paths":  # paths are declared as each stage's deps and outs
            return self._params.paths
        if name not in self._declared:
            raise UndeclaredParamError(_undeclared(self._stage, name))
        keys = self._declared[name]
        section = getattr(self._params, name)
        return section if keys is None else _Section(section, self._stage, name, keys)


def _undeclared(stage: str, key: str) -> str:
    return (f"stage {stage} read params key '{key}', which its entry in tasks/stages.py does not declare "
            f"(DVC would not re-run it when that key changes): add '{key}' to its params, then run "
            "`python -m tasks.dvc_yaml`")


def run_stage(name: str, params: Params) -> dict:
    """The one way both shells (the DVC command and the Prefect task) run a stage."""
    entry = stage(name)
    return entry.function(StageParams(params, entry))
