"""Files only their owner may read: the database and the cache hold secrets (sink ids of
webhooks, packuments of private registries) and what chainwatch decided."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parent with mode 0700. Folders that exist already keep
    their mode (``/tmp`` or a home directory are not ours to change)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created meanwhile by another writer
            continue
        os.chmod(folder, DIR_MODE)  # whatever the umask


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (its mode is then left alone)."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
