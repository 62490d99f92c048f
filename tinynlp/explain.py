"""Why the model predicted what it did: per-word attributions with Captum's layer integrated
gradients on the input embeddings of the PyTorch model behind a variant (an ONNX graph has no
gradients). For NER, one explanation per predicted entity (the target is the mean probability of
its words' tags); for classification, one for the predicted label. Each says its convergence delta:
how far the attributions' sum is from the score difference they explain."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinynlp import ner
from tinynlp.errors import ConfigError
from tinynlp.model_dir import is_model_dir, load_model, read_meta
from tinynlp.predict import entities_of, softmax, split_words


@dataclass(frozen=True)
class Explanation:
    target: str                  # "person: Alice Smith" or "label: positive"
    score: float                 # the model's probability of the target
    words: list[str]
    attributions: list[float]    # one per word, scaled so that the absolute values sum to 1
    delta: float                 # integrated gradients' convergence delta (0: exact)
    span: tuple[int, int] | None = None   # the entity's words (NER)
    label_ids: tuple[int, ...] = ()       # the target: the label, or each entity word's tag


def torch_source(model_dir: str | Path) -> Path:
    """The PyTorch model directory behind `model_dir`: itself for a stage model, the one the
    promoted model was made from (pipeline.json `torch_source`) for a promoted directory."""
    directory = Path(model_dir)
    if any(directory.glob("*.safetensors")) and is_model_dir(directory):
        return directory
    source = read_meta(directory).get("torch_source")
    if not source:
        raise ConfigError(f"{directory}: a promoted model without `torch_source` in its pipeline.json (promoted "
                          "before explanations existed); re-run the evaluate stage (`dvc repro evaluate`)")
    if not is_model_dir(source):
        raise ConfigError(f"{directory}: its PyTorch source {source} is missing; run the pipeline (dvc repro) or "
                          "`dvc pull` it")
    return Path(source)


class Explainer:
    """A stage model loaded once; `explain(text)` gives the prediction's explanations."""

    def __init__(self, model_dir: str | Path, steps: int = 32):
        import torch

        from tinynlp.modeling import load_tokenizer

        source = torch_source(model_dir)
        self.model, self.spec = load_model(source)
        self.model.eval()
        self.tokenizer = load_tokenizer(str(source))
        self.steps, self.torch = steps, torch

    def _encode(self, words: list[str]):
        """The model's inputs, each position's word (a case marker counts as the word it marks)
        and each word's first own subtoken, where its tag is read."""
        shown, origin = ner.model_words(words, self.spec.casing)
        encoded = self.tokenizer(shown, is_split_into_words=True, truncation=True, max_length=self.spec.max_length,
                                 return_tensors="pt", return_token_type_ids=False)
        if self.spec.casing == "shape":
            encoded["token_type_ids"] = self.torch.tensor([ner.shape_type_ids(shown, encoded.word_ids(0))])
        marks = [origin[i + 1] if origin[i] < 0 else origin[i] for i in range(len(origin))]
        word_ids = [None if w is None else marks[w] for w in encoded.word_ids(0)]
        first = {}
        for position, shown_word in enumerate(encoded.word_ids(0)):
            if shown_word is not None and origin[shown_word] >= 0 and origin[shown_word] not in first:
                first[origin[shown_word]] = position
        return encoded, word_ids, first

    def _baseline(self, input_ids):
        """Every real token replaced by [PAD]; [CLS] and [SEP] kept, so only the words' content varies."""
        special = set(self.tokenizer.all_special_ids) - {self.tokenizer.pad_token_id}
        keep = self.torch.tensor([[int(i) in special for i in row] for row in input_ids.tolist()])
        return self.torch.where(keep, input_ids, self.torch.full_like(input_ids, self.tokenizer.pad_token_id))

    def _attribute(self, encoded, score_fn, word_ids, count: int) -> tuple[list[float], float]:
        from captum.attr import LayerIntegratedGradients

        fixed = {k: v for k, v in encoded.items() if k != "input_ids"}  # the mask and any word shapes
        forward = lambda ids: score_fn(self.model(input_ids=ids, **{k: v.expand(ids.shape[0], -1)
                                                                     for k, v in fixed.items()}).logits)
        ig = LayerIntegratedGradients(forward, self.model.get_input_embeddings())
        ids = encoded["input_ids"]
        attributions, delta = ig.attribute(ids, baselines=self._baseline(ids), n_steps=self.steps,
                                           return_convergence_delta=True)
        per_token = attributions.sum(dim=-1)[0].detach().numpy()
        per_word = np.zeros(count)
        for position, word in enumerate(word_ids):
            if word is not None:
                per_word[word] += per_token[position]
        total = np.abs(per_word).sum() or 1.0
        return [round(float(a / total), 4) for a in per_word], round(float(delta.abs().sum()), 4)

    def explain(self, text: str) -> list[Explanation]:
        words = split_words(text)
        if not words:
            raise ConfigError("nothing to explain: the text has no words")
        encoded, word_ids, first = self._encode(words)
        if len(first) < len(words):  # one window only: integrated gradients need the whole text in one pass
            raise ConfigError(f"text too long to explain: its first {len(first)} of {len(words)} words fill the "
                              f"model's window of {self.spec.max_length} subword tokens; explain a shorter text "
                              "(a sentence or a paragraph)")
        with self.torch.no_grad():
            logits = self.model(**encoded).logits[0].numpy()
        probabilities = softmax(logits)
        if self.spec.task == "classification":
            best = int(np.argmax(probabilities))
            attributions, delta = self._attribute(encoded, self._target((), (best,)), word_ids, len(words))
            return [Explanation(f"label: {self.spec.labels[best]}", round(float(probabilities[best]), 4), words,
                                attributions, delta, label_ids=(best,))]
        seen = [w for w in range(len(words)) if w in first]  # a word the tokenizer drops has no subtoken
        tags = [self.spec.labels[int(np.argmax(probabilities[first[w]]))] if w in first else "O"
                for w in range(len(words))]
        word_scores = np.array([probabilities[first[w]].max() if w in first else 1.0 for w in range(len(words))])
        explanations = []
        for entity in entities_of(words, tags, word_scores, text):
            span = [w for w in range(entity.start, entity.end) if w in seen]
            tag_ids = tuple(self.spec.labels.index(tags[w]) for w in span)
            attributions, delta = self._attribute(encoded, self._target([first[w] for w in span], tag_ids), word_ids,
                                                  len(words))
            explanations.append(Explanation(f"{entity.type}: {entity.text}", entity.score, words, attributions, delta,
                                            (entity.start, entity.end), tag_ids))
        return explanations

    def _target(self, positions: list[int], label_ids: tuple[int, ...]):
        """logits -> the target's probability per row: the label's (no positions), or the mean of each
        entity word's tag probability at its first subtoken."""
        def score(logits):
            probs = self.torch.softmax(logits, -1)
            if not positions:
                return probs[:, label_ids[0]]
            return self.torch.stack([probs[:, p, t] for p, t in zip(positions, label_ids)]).mean(0)
        return score

    def score_without(self, explanation: Explanation, removed: set[int]) -> float:
        """The target's probability with the words in `removed` replaced by [PAD] (positions kept, as
        in the integrated-gradients baseline): how much the prediction rests on those words."""
        encoded, _, first = self._encode(explanation.words)
        ids = encoded["input_ids"].clone()
        for position, word in enumerate(encoded.word_ids(0)):
            if word in removed:
                ids[0, position] = self.tokenizer.pad_token_id
        positions = [] if explanation.span is None else [first[w] for w in range(*explanation.span) if w in first]
        with self.torch.no_grad():
            logits = self.model(**{**encoded, "input_ids": ids}).logits
        return float(self._target(positions, explanation.label_ids)(logits)[0])


def as_terminal(text: str, explanations: list[Explanation], top: int = 5) -> str:
    """Each explanation's target and score, then its most important words, signed."""
    if not explanations:
        return f"{text}\n  (no entities predicted: nothing to explain)"
    lines = [text]
    for e in explanations:
        ranked = sorted(range(len(e.words)), key=lambda i: -abs(e.attributions[i]))[:top]
        shown = ", ".join(f"{e.words[i]} {e.attributions[i]:+.2f}" for i in ranked)
        lines.append(f"  {e.target} (p={e.score:.2f}; delta {e.delta:.3f}): {shown}")
    return "\n".join(lines)


def _colour(value: float) -> str:
    """Green for words that raise the target's score, red for words that lower it."""
    alpha = min(1.0, abs(value) * 2.5)
    return f"rgba(22,163,74,{alpha:.2f})" if value >= 0 else f"rgba(220,38,38,{alpha:.2f})"


def _sections(explanations: list[Explanation]) -> str:
    sections = []
    for e in explanations:
        words = []
        for i, (word, value) in enumerate(zip(e.words, e.attributions)):
            inside = e.span is not None and e.span[0] <= i < e.span[1]
            words.append(f'<span class="w{" own" if inside else ""}" style="background:{_colour(value)}" '
                         f'title="{value:+.4f}">{html.escape(word)}</span>')
        sections.append(f"<section><h2>{html.escape(e.target)}</h2><p class=meta>probability {e.score:.4f}; "
                        f"convergence delta {e.delta:.4f}</p><p class=text>{' '.join(words)}</p></section>")
    return "".join(sections) or "<p>No entities predicted: nothing to explain.</p>"


def as_page(explained: list[tuple[str, list[Explanation]]]) -> str:
    """One self-contained page (inline CSS, no scripts, nothing fetched) for any number of texts:
    each explanation's words shaded by attribution, the attribution on hover, the entity's own words
    underlined."""
    body = "".join(f"<article><p class=source>{html.escape(text)}</p>{_sections(explanations)}</article>"
                   for text, explanations in explained)
    return ("<!doctype html><html><head><meta charset=utf-8><title>tinynlp explain</title><style>"
            "body{font:16px/1.6 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
            ".w{padding:0 .15em;border-radius:.2em}.own{text-decoration:underline}.meta{color:#555}"
            "h2{font-size:1.1em;margin-bottom:0}.source{font-weight:600}article{border-top:1px solid #ddd}"
            "</style></head><body><h1>Attributions</h1><p class=meta>Layer integrated gradients on the input "
            "embeddings; green raises the prediction's probability, red lowers it.</p>"
            f"{body}</body></html>\n")
