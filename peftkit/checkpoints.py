"""Training checkpoints complete or absent: :class:`peftkit.trainer.PeftTrainer` writes each one into
``<checkpoints>/.saving/`` and renames it into place once complete, retires old ones by renaming them before
deleting them, and a resumed run starts from :func:`last_checkpoint`, the newest complete one (what a kill during a
save left behind is removed)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .core import CONFIG_FILE, WEIGHTS_FILE

STAGING = ".saving"  # where a checkpoint is written before it is renamed into place
_RETIRED = ".retired-"  # a checkpoint being deleted (renamed first, so a kill never leaves half of one in place)
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the file system allows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def retire(checkpoint: Path) -> None:
    """Delete a checkpoint folder: renamed out of the checkpoints first, so a kill leaves none half deleted."""
    if checkpoint.is_dir():
        grave = checkpoint.with_name(_RETIRED + checkpoint.name)
        shutil.rmtree(grave, ignore_errors=True)
        os.replace(checkpoint, grave)
        shutil.rmtree(grave, ignore_errors=True)


def _complete(checkpoint: Path) -> bool:
    """Every file a resume reads is there and the trainer state (written last by the Trainer) parses."""
    try:
        json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (checkpoint / CONFIG_FILE).is_file() and (checkpoint / WEIGHTS_FILE).is_file()


def checkpoints(folder: Path) -> list[Path]:
    """The checkpoint folders under ``folder``, oldest step first."""
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def last_checkpoint(folder: str | os.PathLike) -> Optional[str]:
    """The newest complete checkpoint under ``folder`` (None: none), to resume from. What a kill during a save
    left behind is removed: the staging folder, checkpoints being retired, and checkpoint folders a resume could
    not read (written before saves were staged)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for leftover in [folder / STAGING, *folder.glob(_RETIRED + "*")]:
        shutil.rmtree(leftover, ignore_errors=True)
    for checkpoint in reversed(checkpoints(folder)):
        if _complete(checkpoint):
            return str(checkpoint)
        retire(checkpoint)
    return None
