"""Content digests: what names a data version, a retraining batch, a run, and the folder where a
training stage keeps resumable checkpoints (only an identical run resumes them)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from tinynlp.config import Params
from tinynlp.splits import LABELS_FILE


def _files(location: Path) -> list[Path]:
    return sorted(p for p in location.rglob("*") if p.is_file()) if location.is_dir() else [location]


def digest(locations: Iterable[str | Path], *, texts: Iterable[str] = (), names: bool = True,
           length: int = 16) -> str:
    """Hex digest of `texts`, then of the files at `locations` (a folder: every file under it, in
    sorted order; a missing location counts as empty). `names`: a file's path counts too, so a
    renamed file changes the digest."""
    hashed = hashlib.sha256()
    for text in texts:
        hashed.update(f"{text}\n".encode())
    for location in map(Path, locations):
        for file in _files(location):
            if not file.is_file():
                continue
            if names:
                hashed.update(f"{file}\n".encode())
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    hashed.update(chunk)
    return hashed.hexdigest()[:length]


def validated_data_version(ingested_dir: str | Path) -> str:
    """The validated splits and label set a model was trained and evaluated on."""
    directory = Path(ingested_dir)
    return digest(sorted(directory.glob("*.parquet")) + [directory / LABELS_FILE])


def checkpoint_dir(params: Params, stage: str, model_dir: str | Path) -> Path:
    """Where a training stage keeps resumable checkpoints. Named by a fingerprint of the stage's
    params, finetune's data limits and input settings, the training data and the starting weights."""
    ingested, augmented = Path(params.paths.ingested), Path(params.paths.augmented)
    inputs = [augmented / "train.parquet", ingested / "dev.parquet", ingested / LABELS_FILE,
              *sorted(Path(model_dir).glob("*.safetensors"))]
    texts = [getattr(params, stage).model_dump_json(), params.finetune.model_dump_json()]
    return Path(params.paths.checkpoints) / stage / digest(inputs, texts=texts, names=False)
