"""One logging set-up for every entry point (DVC command, Prefect flow, CLI): our lines at INFO,
libraries only when they have something to warn about, progress bars only on a terminal."""
from __future__ import annotations

import logging
import os
import sys
import warnings

PROJECT_LOGGERS = ("tinynlp", "tasks", "flows", "cli")


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import transformers
    import datasets

    transformers.utils.logging.set_verbosity_error()
    datasets.utils.logging.set_verbosity_error()
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    for noisy in ("great_expectations", "urllib3", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Known-harmless warnings: torchao's optional CUDA kernels and Triton are absent on CPU; ORT's
    # attention fusion compares a pruned model's narrower attention width with the hidden size;
    # torch deprecates the Enum registrations torchao makes on import (torchao's to change, not ours).
    for harmless in ("torchao", "fusion_attention", "torch.utils._pytree"):
        logging.getLogger(harmless).setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_ort_preprocessing_advice)
    # inductor's own oneDNN lowering copies a tensor with torch.tensor() while compiling INC's INT8
    # program, once per compiled shape: torch's code, nothing a user of ours can act on
    warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning,
                            module=r"torch\._inductor")


def _not_ort_preprocessing_advice(record: logging.LogRecord) -> bool:
    # onnxruntime's quantizers log this advice through the root logger on every call, whatever the
    # graph; it repeats per candidate and says nothing about our run
    return not record.getMessage().startswith("Please consider to run pre-processing before quantization")
