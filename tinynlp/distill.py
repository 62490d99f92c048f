"""Knowledge distillation: a shallower student initialised from the teacher's layers, trained on
α·CE(labels) + (1−α)·T²·KL(teacher ‖ student) over temperature-softened logits (Hinton et al.)."""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -100
TEACHER_LOGITS = "teacher_logits"


LAYER_SPREADS = ("bottom", "top")


def evenly_spaced_layers(teacher_layers: int, student_layers: int, spread: str = "bottom") -> list[int]:
    """Which teacher layers a student keeps, spread out evenly. `bottom` starts at the first layer
    (DistilBERT's every other layer: 6 -> 3 keeps 0, 2, 4); `top` ends at the last one, whose
    output the teacher's head was trained on (6 -> 3 keeps 1, 3, 5)."""
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"student layers must be between 1 and {teacher_layers}, got {student_layers}")
    if spread not in LAYER_SPREADS:
        raise ValueError(f"layer spread must be one of {LAYER_SPREADS}, got {spread!r}")
    if spread == "bottom":
        return [i * teacher_layers // student_layers for i in range(student_layers)]
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def student_from_teacher(teacher: torch.nn.Module, layer_map: Sequence[int]) -> torch.nn.Module:
    """A copy of the teacher keeping only the mapped encoder layers (embeddings and head shared
    by copy), so the student starts close to the teacher instead of from scratch."""
    student = copy.deepcopy(teacher)
    encoder = student.base_model.encoder
    layers = list(teacher.base_model.encoder.layer)
    if max(layer_map) >= len(layers):
        raise ValueError(f"layer_map {list(layer_map)} names a layer the {len(layers)}-layer teacher lacks")
    encoder.layer = torch.nn.ModuleList(copy.deepcopy(layers[i]) for i in layer_map)
    for index, layer in enumerate(encoder.layer):  # attention caches are keyed by position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    student.config.num_hidden_layers = len(layer_map)
    return student


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                      alpha: float, temperature: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """α·CE on the labels plus (1−α)·T²·KL on the soft targets; T² keeps the soft-target gradients
    on the same scale whatever the temperature. `mask` picks the real (non-padding) positions of
    token-level logits; the teacher's view of every real token is signal, labelled or not."""
    classes = student_logits.shape[-1]
    student_flat, teacher_flat = student_logits.reshape(-1, classes), teacher_logits.reshape(-1, classes)
    if mask is not None:
        keep = mask.reshape(-1).bool()
        student_flat, teacher_flat = student_flat[keep], teacher_flat[keep]
    soft = F.kl_div(F.log_softmax(student_flat / temperature, dim=-1), F.softmax(teacher_flat / temperature, dim=-1),
                    reduction="batchmean") * temperature ** 2
    if labels is None or alpha == 0 or not bool((labels != IGNORE).any()):
        return (1 - alpha) * soft  # a batch of unlabelled transfer text: the teacher's targets only
    hard = F.cross_entropy(student_logits.reshape(-1, classes), labels.reshape(-1), ignore_index=IGNORE)
    return alpha * hard + (1 - alpha) * soft


def transfer_texts(location: str, count: int, seed: int, as_sentences: bool,
                   words: tuple[int, int] = (3, 60)) -> list:
    """A seeded sample of `count` texts from an unlabelled corpus (a .txt file or a folder of them,
    one paragraph per line), in corpus order: NER gets sentences as word lists of `words` (min,
    max) words, split as `predict` splits raw text; classification gets whole lines."""
    from tinynlp.mlm import corpus_files
    from tinynlp.predict import sentence_spans, split_words
    from tinynlp.readers import read_text, text_lines

    texts: list = []
    for path in corpus_files(location):
        for line in text_lines(read_text(path)):
            if not line.strip():
                continue
            if not as_sentences:
                texts.append(line.strip())
                continue
            tokens = split_words(line)
            texts.extend(tokens[a:b] for a, b in sentence_spans(tokens) if words[0] <= b - a <= words[1])
    if len(texts) <= count:
        return texts
    chosen = np.random.default_rng(seed).choice(len(texts), size=count, replace=False)
    return [texts[i] for i in sorted(chosen)]


def hidden_state_loss(student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor],
                      layer_map: Sequence[int], mask: torch.Tensor) -> torch.Tensor:
    """MSE between each student layer's output and the teacher layer it was copied from."""
    weights = mask.unsqueeze(-1).float()
    losses = [(((student_hidden[i + 1] - teacher_hidden[t + 1]) ** 2) * weights).sum() / weights.sum().clamp(min=1)
              / student_hidden[i + 1].shape[-1] for i, t in enumerate(layer_map)]
    return torch.stack(losses).mean()


def make_loss_fn(teacher: torch.nn.Module, alpha: float, temperature: float, token_level: bool,
                 hidden_weight: float = 0.0, layer_map: Sequence[int] = ()) -> Callable:
    """The `loss_fn(model, inputs) -> (loss, outputs)` the training routine takes. Teacher logits come
    from the batch when cached; otherwise (and always for dev batches) the teacher runs here."""
    teacher.eval()

    def loss_fn(model, inputs):
        inputs = dict(inputs)
        labels, cached = inputs.pop("labels", None), inputs.pop(TEACHER_LOGITS, None)
        need_hidden = hidden_weight > 0
        outputs = model(**inputs, output_hidden_states=need_hidden)
        teacher_out = None
        if cached is None or need_hidden:
            with torch.no_grad():
                teacher_out = teacher(**inputs, output_hidden_states=need_hidden)
        target = cached if cached is not None else teacher_out.logits
        mask = inputs["attention_mask"] if token_level else None
        loss = distillation_loss(outputs.logits, target, labels, alpha, temperature, mask)
        if need_hidden:
            loss = loss + hidden_weight * hidden_state_loss(outputs.hidden_states, teacher_out.hidden_states,
                                                            layer_map, inputs["attention_mask"])
            # evaluation reads every tensor in the outputs as a prediction: hand back the logits only
            outputs = type(outputs)(logits=outputs.logits)
        return loss, outputs

    return loss_fn


def with_teacher_logits(features: list[dict], logits: Sequence[np.ndarray]) -> list[dict]:
    """Training features carrying the teacher's (unpadded) logits, computed once."""
    return [{**f, TEACHER_LOGITS: np.asarray(l, dtype=np.float32)} for f, l in zip(features, logits)]


def padding_teacher_logits(collator: Callable) -> Callable:
    """Wrap a collator so cached teacher logits are padded to the batch's sequence length."""

    def collate(features: list[dict]):
        cached = [f.get(TEACHER_LOGITS) for f in features]
        batch = collator([{k: v for k, v in f.items() if k != TEACHER_LOGITS} for f in features])
        if cached[0] is None:
            return batch
        arrays = [np.asarray(c, dtype=np.float32) for c in cached]
        if arrays[0].ndim == 1:  # sequence classification: one row of logits per example
            batch[TEACHER_LOGITS] = torch.from_numpy(np.stack(arrays))
            return batch
        length, classes = batch["input_ids"].shape[1], arrays[0].shape[-1]
        padded = np.zeros((len(arrays), length, classes), dtype=np.float32)
        for row, array in enumerate(arrays):
            padded[row, : len(array)] = array
        batch[TEACHER_LOGITS] = torch.from_numpy(padded)
        return batch

    return collate
