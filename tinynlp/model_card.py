"""The promoted model's card in the Hugging Face format (`README.md` with YAML front matter that
`huggingface_hub` reads, a `model-index` of the promoted variant's dev and test results), its
sections filled from the run: intended use, training data, the stages and params that made the
variant, every variant's evaluation, limitations from the error analysis, drift monitoring, and
how to reproduce it."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tinynlp.error_report import signed_points
from tinynlp.reporting import markdown_table

KINDS = {"torch": "PyTorch", "onnx": "ONNX Runtime", "inc": "Intel Neural Compressor"}
PIPELINE_TAGS = {"ner": "token-classification", "classification": "text-classification"}
METRIC_NAMES = {"ner": ("f1", "entity F1 (seqeval, exact span and type)"), "classification": ("accuracy", "accuracy")}
DEFAULT_USE = {
    "ner": ("Tagging the entity types below in text like the training data, where a small CPU model "
            "must answer in milliseconds.",
            "Decisions about individuals; text unlike the training data (another domain, register or "
            "language) without evaluating it there first."),
    "classification": ("Labelling text like the training data with the classes below, where a small CPU model "
                       "must answer in milliseconds.",
                       "Decisions about individuals; text unlike the training data (another domain, register "
                       "or language) without evaluating it there first."),
}


@dataclass(frozen=True)
class CardInputs:
    """What the evaluate stage knows when it promotes: the chosen row, every row with the gate's
    verdict, the error analysis, the training data and the run's recorded params."""

    variant: str
    task: str
    labels: list[str]
    rows: list[dict]               # every variant's row, with a `gate` column
    analysis: dict                 # error_report summary (shipped model, buckets, limitations)
    train_labels: list             # per training example: its tags (NER) or label
    sizes: dict                    # split -> examples
    data_version: str
    data_source: dict              # split -> raw path
    procedure: list[tuple[str, dict]]   # (stage, its params as dvc.lock recorded them), in DAG order
    drift: dict                    # params.drift
    code: str                      # the code version in words
    commit: str | None
    privacy: dict | None = None    # the DP-SGD guarantee (privacy.guarantee), None: trained without DP
    pii_mode: str = "off"          # ingest.pii.mode: what happened to personal data in the train texts
    casing: str = "none"           # the model's finetune casing (spec): shape adds an input
    without_shapes: dict | None = None  # shape models: test_score fed token types 0, and the shape_dropout trained with


def label_distribution(task: str, train_labels: list) -> dict[str, int]:
    if task == "ner":
        return dict(Counter(tag[2:] for tags in train_labels for tag in tags if tag.startswith("B-")).most_common())
    return dict(Counter(train_labels).most_common())


def base_model(card_cfg, checkpoint: str) -> str | None:
    """The card's base model: the configured id, else the checkpoint when it names a hub model."""
    if card_cfg.base_model:
        return card_cfg.base_model
    if checkpoint.startswith("package:") or Path(checkpoint).exists():
        return None
    return checkpoint


def build(inputs: CardInputs, card_cfg, checkpoint: str):
    """The ModelCard object; `str(card)` is the README text."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    metric, metric_name = METRIC_NAMES[inputs.task]
    row = next(r for r in inputs.rows if r["name"] == inputs.variant)
    dataset = card_cfg.datasets[0] if card_cfg.datasets else "custom"
    results = [EvalResult(task_type=PIPELINE_TAGS[inputs.task], dataset_type=dataset, dataset_name=dataset,
                          dataset_split=split, metric_type=metric, metric_name=metric_name,
                          metric_value=row[f"{key}_score"])
               for split, key in (("validation", "dev"), ("test", "test"))]
    data = ModelCardData(language=list(card_cfg.language), license=card_cfg.license,
                         base_model=base_model(card_cfg, checkpoint), datasets=list(card_cfg.datasets) or None,
                         metrics=[metric], pipeline_tag=PIPELINE_TAGS[inputs.task], library_name="transformers",
                         tags=["onnx", "tinynlp", row["kind"], *(["differential-privacy"] if inputs.privacy else [])], model_name=f"tinynlp-{inputs.task}-{inputs.variant}",
                         eval_results=results)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(inputs, card_cfg, row)}")


def _body(inputs: CardInputs, card_cfg, row: dict) -> str:
    intended, out_of_scope = DEFAULT_USE[inputs.task]
    sections = [
        f"# tinynlp {inputs.task} model: `{inputs.variant}`\n",
        f"Promoted by the evaluate stage's gate ({KINDS.get(row['kind'], row['kind'])}): test score {row['test_score']}, dev score "
        f"{row['dev_score']}, batch-1 latency p50 {row['latency_ms_p50']} ms ({row['speedup']}x the fp32 PyTorch "
        f"model), {row['size_mb']} MB. Labels: {', '.join(inputs.labels)}.\n",
        "## Intended use\n", (card_cfg.intended_use or intended) + "\n",
        "## Out-of-scope use\n", (card_cfg.out_of_scope_use or out_of_scope) + "\n",
        *_inputs(inputs), _training_data(inputs, card_cfg), _privacy(inputs), _procedure(inputs), _evaluation(inputs),
        "## Limitations\n", "\n".join(f"- {line}" for line in inputs.analysis["limitations"])
        or "- The error analysis found no type or bucket far below the rest.", "",
        _monitoring(inputs.drift), _reproduce(inputs),
    ]
    return "\n".join(sections) + "\n"


def _inputs(inputs: CardInputs) -> list[str]:
    """Word shapes are an input no tokenizer makes: say so, with the ids, for callers outside tinynlp."""
    if inputs.casing != "shape":
        return []
    from tinynlp.ner import WORD_SHAPES

    ids = ", ".join(f"{i + 1} {shape}" for i, shape in enumerate(WORD_SHAPES))
    return ["## Inputs\n",
            "`model.onnx` takes `input_ids`, `attention_mask` and `token_type_ids`, which here carry each "
            f"subtoken's word shape: 0 for special tokens and padding, {ids} (`tinynlp.ner.shape_type_ids`). "
            "`tinynlp predict` and `tinynlp serve` compute them. A plain transformers or Optimum pipeline feeds "
            "its tokenizer's token types (all 0) instead: it runs, but without the case of each word." +
            _without_shapes(inputs) + "\n"]


def _without_shapes(inputs: CardInputs) -> str:
    if not inputs.without_shapes:
        return ""
    row = next(r for r in inputs.rows if r["name"] == inputs.variant)
    rate = inputs.without_shapes["shape_dropout"]
    how = (f"trained with {rate:.0%} of its training sentences' shapes hidden (`finetune.shape_dropout`)" if rate
           else "trained with every sentence's shapes (`finetune.shape_dropout: 0`)")
    return (f" Fed token types 0, this model scores test entity F1 {inputs.without_shapes['test_score']:.4f} against "
            f"{row['test_score']:.4f} with its shapes; it was {how}.")


def _training_data(inputs: CardInputs, card_cfg) -> str:
    sizes = ", ".join(f"{split} {count}" for split, count in inputs.sizes.items())
    sources = ", ".join(f"{split} `{path}`" for split, path in inputs.data_source.items())
    distribution = label_distribution(inputs.task, inputs.train_labels)
    rows = [{"label": label, "train examples" if inputs.task == "classification" else "train entities": count}
            for label, count in distribution.items()]
    return (f"## Training data\n\nSource: {sources}; validated data version `{inputs.data_version}`; licence: "
            f"{card_cfg.data_license or 'not stated in params (evaluate.card.data_license)'}. Examples: {sizes}.\n\n"
            f"{markdown_table(rows, list(rows[0])) if rows else ''}\n")


PII_MODES = {"off": "not looked for (ingest.pii.mode: off)",
             "report": "counted per type but left in the text (ingest.pii.mode: report); the model may have seen them",
             "redact": "replaced by their type name before any stage read the text (ingest.pii.mode: redact)",
             "fail": "refused: a train file holding any would have stopped ingestion (ingest.pii.mode: fail)"}


def _privacy(inputs: CardInputs) -> str:
    found = f"Personal data (e-mail, phone, card numbers and the like) in the train texts: {PII_MODES[inputs.pii_mode]}."
    dp = inputs.privacy
    if not dp:
        return (f"## Privacy\n\n{found} Trained without differential privacy: like any fine-tuned model it may "
                "memorise rare strings of its training data (finetune.dp.enabled trains with DP-SGD).\n")
    return (f"## Privacy\n\n{found}\n\nFine-tuned with differentially private SGD (Opacus): "
            f"**(ε = {dp['epsilon']}, δ = {dp['delta']:g})-DP** for each training example (a sentence, or each window "
            f"of one longer than the model's window). ε is what the RDP accountant counted for the {dp['steps']} steps "
            f"taken (of {dp['planned_steps']} planned for a budget of {dp['epsilon_target']}). Every example's "
            f"gradient was clipped to norm {dp['max_grad_norm']} and Gaussian noise of multiplier "
            f"{dp['noise_multiplier']} added; batches were Poisson-sampled at rate {dp['sample_rate']}. Trained: "
            f"{dp['trained']}. Not covered: the base checkpoint's own pretraining data, and the dev split (early "
            "stopping and the gate chose on it). Only variants that read no training data after fine-tuning "
            "(ONNX export, dynamic INT8) could be promoted.\n")


def _procedure(inputs: CardInputs) -> str:
    parts = ["## Training and compression procedure\n",
             f"The stages that made `{inputs.variant}`, each with the params `dvc.lock` recorded for it:\n"]
    for stage, values in inputs.procedure:
        own = values.get(stage)
        shown = "; ".join(f"{key} = {value}" for key, value in _flat(own, stage)) if isinstance(own, dict) else ""
        parts.append(f"- **{stage}**: {shown or '(no params of its own)'}")
    return "\n".join(parts) + "\n"


def _flat(section: dict, prefix: str) -> list[tuple[str, object]]:
    """A params section as dotted keys; a switched-off part (`enabled: false`) as one `off`."""
    if section.get("enabled") is False:
        return [(prefix, "off")]
    items = []
    for key, value in section.items():
        if isinstance(value, dict):
            items += _flat(value, f"{prefix}.{key}")
        elif key != "enabled":
            items.append((f"{prefix}.{key}", value))
    return items


def _evaluation(inputs: CardInputs) -> str:
    columns = ["name", "kind", "test_score", "dev_score", "latency_ms_p50", "speedup", "size_mb", "gate"]
    analysis = inputs.analysis
    parts = ["## Evaluation\n", "Every variant of the run, on the same dev and test splits (the gate's verdict in "
             "the last column):\n", markdown_table(inputs.rows, columns), ""]
    shipped = analysis["models"][analysis["shipped"]]["test"]
    if inputs.task == "ner":
        rows = [{"type": kind, **{k: s["strict"][k] for k in ("precision", "recall", "f1", "possible")}}
                for kind, s in sorted(shipped["semeval"]["per_type"].items())]
        parts += ["Per entity type (test, strict scheme):\n", markdown_table(rows, list(rows[0])), ""]
    bucket_rows = [{k: r[k] for k in ("bucket", "gold", analysis["reference"])} | (
        {analysis["shipped"]: signed_points(r[analysis["shipped"]])} if analysis["shipped"] in r else {})
        for r in analysis["buckets"] if r["gold"]]
    if bucket_rows:
        parts += [f"By bucket (test {analysis['metric']} of the fp32 model; the promoted variant's change in "
                  "points):\n", markdown_table(bucket_rows, list(bucket_rows[0])), ""]
    parts.append("The full error analysis is `reports/evaluate/error_analysis.md` in the repository.")
    return "\n".join(parts) + "\n"


def _monitoring(drift: dict) -> str:
    return ("## Monitoring\n\nNew data is tested for drift against this model's training data (`tinynlp drift`, "
            f"the retraining flow): signals deciding the verdict: {', '.join(drift['decide_on'])}; significance "
            f"level {drift['alpha']}; vocabulary signal flags an out-of-vocabulary rise above "
            f"{drift['max_oov_increase']}; {drift['permutations']} permutations per test.\n")


def _reproduce(inputs: CardInputs) -> str:
    rev = inputs.commit[:12] if inputs.commit else "<commit>"
    return (f"## Lineage and reproduction\n\nCode: {inputs.code}. Lineage record: `lineage.json` beside this card.\n\n"
            f"```bash\ngit checkout {rev} && dvc pull && dvc repro\n```\n")
