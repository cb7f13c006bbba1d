"""Crash-safe writes shared by the stages: a reader finds the old file or directory or the new one, never half."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path


class OutputDirError(Exception):
    """An output path that skilltag must not write to or replace."""


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename or a new file in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _is_owned(marker: Path, keys: tuple[str, ...]) -> bool:
    """``marker`` is JSON (an object with ``keys`` if given): written by its tool, not a file that shares its name."""
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return not keys or (isinstance(data, dict) and all(k in data for k in keys))


def check_replaceable(final: Path, owned_by: str, kind: str, keys: tuple[str, ...]) -> None:
    """Refuse, before any long work, an output path that :func:`replace_dir` would refuse."""
    if not final.exists():
        return
    if not final.is_dir() or final.is_symlink():
        raise OutputDirError(f"{final} exists and is not a directory (or is a link); choose another path")
    if any(final.iterdir()) and not _is_owned(final / owned_by, keys):
        raise OutputDirError(
            f"refusing to replace {final}: it is not empty and not a {kind} (no skilltag {owned_by}); "
            f"choose another path"
        )


def replace_dir(
    final: str | os.PathLike, fill: Callable[[Path], None], owned_by: str, kind: str, keys: tuple[str, ...]
) -> Path:
    """Write a directory with ``fill`` under a temporary sibling name, then swap it in for ``final``.

    An existing ``final`` is replaced only when it is empty or holds ``owned_by``, a JSON file with
    ``keys`` that every output of this ``kind`` has, so a mistyped ``-o`` cannot delete someone else's data.
    """
    final = Path(os.path.abspath(final))  # "." or "a/.." have no name to put a sibling beside
    check_replaceable(final, owned_by, kind, keys)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        fill(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise OutputDirError(f"cannot write {kind} to {final}: {e}") from e
        raise
    return final
