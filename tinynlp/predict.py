"""Serving the promoted model: ONNX weights + tokenizer + pipeline.json in one directory, turned
into entities (NER) or labels (classification) with scores for raw text."""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from tinynlp import ner, textclf
from tinynlp.capture import Served
from tinynlp.errors import ConfigError
from tinynlp.inference import predict_logits
from tinynlp.model_dir import MODEL_FILE, PIPELINE_FILE

# Words for NER input: URLs, @mentions and #hashtags stay whole; punctuation stands alone, as in
# CoNLL-style training data.
WORD = re.compile(r"https?://\S+|[@#]?\w+(?:['’\-]\w+)*|[^\w\s]")


@dataclass(frozen=True)
class Entity:
    text: str
    type: str
    start: int        # word index (inclusive)
    end: int          # word index (exclusive)
    score: float      # mean probability of the entity's word tags
    char_start: int | None = None   # offsets in the raw text (None for pre-split words):
    char_end: int | None = None     # text[char_start:char_end] is the entity as written


@dataclass(frozen=True)
class Label:
    label: str
    score: float
    scores: dict[str, float]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def word_confidence(scores: Sequence[float]) -> tuple[float, float]:
    """How sure the model was of a sentence's tags: the mean and the least word probability (1.0
    each for a sentence without words)."""
    return (float(np.mean(scores)), float(np.min(scores))) if len(scores) else (1.0, 1.0)


def split_words(text: str) -> list[str]:
    return WORD.findall(text)


SENTENCE_ENDS = {".", "!", "?"}


def sentence_spans(words: Sequence[str]) -> list[tuple[int, int]]:
    """Word ranges of the sentences in a text's words: a sentence ends after ., ! or ? (a run of
    them stays together). For models trained with document context, which tag sentence by sentence."""
    spans, start = [], 0
    for index, word in enumerate(words):
        last = index + 1 == len(words)
        if word in SENTENCE_ENDS and (last or words[index + 1] not in SENTENCE_ENDS):
            spans.append((start, index + 1))
            start = index + 1
    if start < len(words):
        spans.append((start, len(words)))
    return spans


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each word `split_words` gives, in the same order."""
    return [match.span() for match in WORD.finditer(text)]


def entities_of(words: Sequence[str], tags: Sequence[str], probabilities: np.ndarray,
                text: str | None = None) -> list[Entity]:
    """Entities from word tags. With the raw `text` the words came from, each entity carries its
    character offsets and its text as written there (spacing kept); otherwise words joined by spaces."""
    from seqeval.metrics.sequence_labeling import get_entities

    spans = word_spans(text) if text is not None else None
    entities = []
    for kind, start, end in get_entities(list(tags)):
        score = round(float(probabilities[start:end + 1].mean()), 4)
        if spans is None:
            entities.append(Entity(" ".join(words[start:end + 1]), kind, start, end + 1, score))
        else:
            first, last = spans[start][0], spans[end][1]
            entities.append(Entity(text[first:last], kind, start, end + 1, score, first, last))
    return entities


def redacted_output(text: str, result: list[Entity] | Label) -> tuple[str, list[Entity] | Label]:
    """`text` and its entities with e-mail addresses, phone and card numbers and the other personal
    data types masked (tinynlp.pii's defaults), for services that must not echo them."""
    from dataclasses import replace

    from tinynlp import pii

    masked = pii.mask_in_place(text)
    if masked == text or not isinstance(result, list):
        return masked, result
    return masked, [replace(e, text=masked[e.char_start:e.char_end]) if e.char_start is not None else e
                    for e in result]


def check_model_dir(model_dir: str | Path) -> Path:
    directory = Path(model_dir)
    if not (directory / MODEL_FILE).is_file() or not (directory / PIPELINE_FILE).is_file():
        raise ConfigError(f"{directory}: not a promoted model (needs {MODEL_FILE} and {PIPELINE_FILE}); "
                          "run the pipeline first (dvc repro)")
    return directory


class Predictor:
    """Loads a promoted model directory once; `predict` takes raw texts."""

    def __init__(self, model_dir: str | Path, threads: int = 0, batch_size: int = 32, redact_pii: bool = False):
        from transformers import AutoTokenizer

        from tinynlp.modeling import available_cores, check_tokenizer_files
        from tinynlp.quantization import OnnxRunner

        directory = check_model_dir(model_dir)
        meta_path = directory / PIPELINE_FILE
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.labels = list(self.meta["labels"])
        check_tokenizer_files(directory)  # else a config-only tokenizer maps every word to [UNK], silently
        self.tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
        self.runner = OnnxRunner(directory / MODEL_FILE, threads or available_cores())
        self.batch_size = batch_size
        self.redact_pii = redact_pii

    def stream(self, texts: Iterable[str], chunk: int = 1024, document: bool = False
               ) -> Iterator[tuple[str, list[Entity] | Label]]:
        """(text, result) for any number of texts, `chunk` at a time: memory stays flat however
        long the input is, and results appear while the rest is still being read. `document`: the
        texts are one document's sentences (its context reaches across the texts of a chunk)."""
        iterator = iter(texts)
        while batch := list(itertools.islice(iterator, chunk)):
            yield from self.outputs(batch, [0] * len(batch) if document else None)

    def outputs(self, texts: Sequence[str], documents: Sequence[int | None] | None = None
                ) -> list[tuple[str, list[Entity] | Label]]:
        """(text, result) per text, as a caller shows them: with `redact_pii`, personal data in the
        text and in entities is masked at its own length (offsets stay valid); the model still reads
        the text as written."""
        return [(shown, result) for shown, result, _ in self.served(texts, documents)]

    def served(self, texts: Sequence[str], documents: Sequence[int | None] | None = None
               ) -> list[tuple[str, list[Entity] | Label, Served]]:
        """`outputs`, each with what traffic capture keeps of it (words, tags, confidence)."""
        detailed = self.predict_detailed(texts, documents)
        if not self.redact_pii:
            return [(text, result, kept) for text, (result, kept) in zip(texts, detailed)]
        return [(*redacted_output(text, result), kept) for text, (result, kept) in zip(texts, detailed)]

    def predict(self, texts: Sequence[str], documents: Sequence[int | None] | None = None
                ) -> list[list[Entity]] | list[Label]:
        return [result for result, _ in self.predict_detailed(texts, documents)]

    def predict_detailed(self, texts: Sequence[str], documents: Sequence[int | None] | None = None
                         ) -> list[tuple[list[Entity] | Label, Served]]:
        """Each text's result and its `Served` record: NER keeps the words, their tags and how sure
        the model was of them (mean and least word probability). `documents`, for a model trained
        with document context: per text, a document id (consecutive texts with the same id are
        one document, in order) or None (the text is a document of its own, as without it)."""
        if self.meta["task"] == "ner":
            sentences = [split_words(t) for t in texts]
            return [(entities_of(words, tags, scores, text), Served(text, tags, *word_confidence(scores), words))
                    for text, words, (tags, scores) in zip(texts, sentences, self.tag_texts(sentences, documents))]
        return [(label, Served(text, label.label, label.score, label.score))
                for text, label in zip(texts, self.label_texts(texts))]

    def tag_texts(self, texts: list[list[str]], documents: Sequence[int | None] | None = None
                  ) -> list[tuple[list[str], np.ndarray]]:
        """Word tags of whole texts. A model trained with document context tags them sentence by
        sentence, each with its neighbours in the text (and in the texts of its document) as context."""
        if not self.meta.get("context"):
            return self.tag_words(texts)
        keys = [index - len(texts) if documents is None or documents[index] is None else documents[index]
                for index in range(len(texts))]  # None: a document of its own (negative ids are never given)
        pieces = [(text, span) for text, words in enumerate(texts) for span in sentence_spans(words)]
        tagged = self.tag_words([texts[t][a:b] for t, (a, b) in pieces], [keys[t] for t, _ in pieces])
        out = [([], []) for _ in texts]
        for (text, _), (tags, scores) in zip(pieces, tagged):
            out[text][0].extend(tags)
            out[text][1].extend(scores)
        return [(tags, np.asarray(scores, dtype=np.float64)) for tags, scores in out]

    def tag_words(self, sentences: list[list[str]], documents: Sequence[int] | None = None
                  ) -> list[tuple[list[str], np.ndarray]]:
        """NER on word lists: per sentence, a tag and the probability of that tag for every word;
        with `documents` (an id per sentence), document context as the model was trained with."""
        encoded = ner.encode(self.tokenizer, sentences, None, {l: i for i, l in enumerate(self.labels)},
                             self.meta["max_length"], self.meta["stride"], casing=self.meta.get("casing", "none"),
                             context=self.meta.get("context", 0), documents=documents)
        logits = predict_logits(self.runner, encoded.features, self.batch_size, self.tokenizer.pad_token_id)
        words = ner.word_logits(encoded, logits, len(self.labels))
        results = []
        for (totals, _), ids in zip(words, ner.tag_ids(words, self.labels, self.meta.get("decoding", "argmax"))):
            probabilities = softmax(totals)  # each word's score: the probability of the tag it got
            results.append(([self.labels[i] for i in ids], probabilities[np.arange(len(ids)), ids]))
        return results

    def label_texts(self, texts: Sequence[str]) -> list[Label]:
        """Text classification: the best label, its probability and every class's."""
        encoded = textclf.encode(self.tokenizer, texts, None, {}, self.meta["max_length"])
        logits = predict_logits(self.runner, encoded.features, self.batch_size, self.tokenizer.pad_token_id)
        results = []
        for row in softmax(np.stack(logits)):
            best = int(np.argmax(row))
            results.append(Label(self.labels[best], round(float(row[best]), 4),
                                 {l: round(float(p), 4) for l, p in zip(self.labels, row)}))
        return results
