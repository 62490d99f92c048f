"""Which process of a multi-process training job this is, and the few collectives the pipeline
needs around the HF Trainer. `torchrun` and `accelerate launch` start N copies of
`python -m tasks <stage>` and tell each its place through RANK, LOCAL_RANK, WORLD_SIZE and
LOCAL_WORLD_SIZE; without them this is the one and only process (world size 1) and every helper
here is a no-op. No Prefect, no DVC: the stage shells and the training routine both use it."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from tinynlp.errors import ConfigError

log = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().lstrip("-").isdigit() else default


def world_size() -> int:
    """Processes in the job (1 when not launched by torchrun / accelerate)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    return _env_int("RANK", 0)


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0)


def local_world_size() -> int:
    """Processes of the job on this machine: they share its cores."""
    return max(1, _env_int("LOCAL_WORLD_SIZE", world_size()))


def is_main() -> bool:
    """Rank 0: the one process that writes artifacts and logs progress."""
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


def resolve_device(device: str, precision: str = "fp32") -> str:
    """`execution.device` as the device to train on ('auto': cuda when torch sees a GPU), with the
    precision checked against it (fp16 mixed precision needs cuda)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("execution.device: cuda, but torch sees no GPU on this machine (torch "
                          f"{torch.__version__}); use device auto or cpu")
    if precision == "fp16" and device != "cuda":
        raise ConfigError("execution.precision: fp16 needs a GPU (device resolved to cpu); use bf16 or fp32 on CPU")
    return device


def backend(device: str) -> str:
    """The process-group backend for a resolved device: nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device == "cuda" else "gloo"


def replicas(device: str) -> int:
    """Model copies that share one optimiser step: the processes of the job, or, in a single process on
    a machine with several GPUs, those GPUs (the HF Trainer then wraps the model in DataParallel)."""
    if is_distributed():
        return world_size()
    if device == "cuda":
        import torch

        return max(1, torch.cuda.device_count())
    return 1


def per_replica_batch(batch_size: int, copies: int) -> int:
    """The configured batch is the global batch (what one optimiser step sees, before gradient
    accumulation); each copy takes an equal share, so the learning-rate schedule and the number
    of steps stay those of a single-process run."""
    if batch_size % copies:
        raise ConfigError(f"batch_size {batch_size} cannot be split evenly over {copies} processes/devices: it is the "
                          "global batch of one step and each takes an equal share; use a multiple of "
                          f"{copies} (e.g. {max(copies, batch_size // copies * copies)}) or launch a number of "
                          "processes that divides it")
    return batch_size // copies


def _initialised() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def process_group(device: str, precision: str = "fp32") -> Iterator[None]:
    """The job's process group for the whole stage (the Trainer reuses it), destroyed on the way
    out so every rank ends cleanly. Nothing happens in a single process."""
    if not is_distributed() or _initialised():
        yield
        return
    import torch
    import torch.distributed as dist

    device = resolve_device(device, precision)
    chosen = backend(device)
    if chosen == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=chosen)
    log.info("distributed training: %d processes, backend %s, device %s", world_size(), chosen, device)
    try:
        yield
    finally:
        if _initialised():
            dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if _initialised():
        import torch.distributed as dist

        dist.barrier()


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's `flag`, on every rank."""
    if not _initialised():
        return flag
    import torch
    import torch.distributed as dist

    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=on)
    dist.broadcast(value, src=0)
    return bool(value.item())


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds and saves something), the others after it (and
    find what it saved)."""
    if not is_main():
        barrier()
    yield  # rank 0 failing here skips its barrier: the launcher then stops the waiting ranks
    if is_main():
        barrier()
