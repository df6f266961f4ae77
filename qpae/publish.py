"""A run's output folder: all of its files or none of them.

The files of one result (a model, its metrics, its receipt) are written into a hidden staging
folder beside the destination and published with one ``rename``: a reader never sees a model
without its receipt, and a killed run leaves no half folder under the destination's name. A
destination that already holds anything is refused: a run never overwrites another run's
outputs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path


class OutputExistsError(FileExistsError):
    """The destination of a run's outputs already holds files (of another run, or its input)."""


def ensure_free(final: str | Path) -> None:
    """Raise :class:`OutputExistsError` unless ``final`` is absent or an empty folder."""
    final = Path(final)
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise OutputExistsError(f"{final} exists and is not a folder; choose another output folder")
    if final.is_dir() and any(final.iterdir()):
        raise OutputExistsError(
            f"{final} already holds another run's outputs; qpae never overwrites them. "
            "Choose a new output folder (by default every run gets its own)."
        )


def publish_files(final: str | Path, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (name → content) into a staging folder and rename it to ``final``.

    Raises:
        OutputExistsError: ``final`` holds files (checked before writing and, atomically, by
            the rename itself: a folder that filled up meanwhile is never merged into).
    """
    final = Path(final)
    ensure_free(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_leftovers(final.parent)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=_staging_prefix(final, os.getpid())))
    try:
        for name, data in files.items():
            if Path(name).name != name or name.startswith("."):
                raise ValueError(f"output file names are plain names, got {name!r}")
            with open(staging / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        try:
            # POSIX rename replaces an absent or empty folder and fails on a non-empty one
            os.rename(staging, final)
        except OSError as err:
            raise OutputExistsError(f"{final} appeared while this run was writing ({err})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _host() -> str:
    # a leftover is judged dead only by the host that wrote it: on a shared filesystem another
    # host's live writer has a pid this host does not know
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _staging_prefix(final: Path, pid: int) -> str:
    return f".{final.name}.staging-{_host()}-{pid}-"


def temp_prefix(name: str) -> str:
    """The prefix of this process's temp file for ``name`` (``mkstemp(prefix=..., suffix=".tmp")``):
    hidden, and carrying the host and pid so that a later run can tell a dead writer's leftovers."""
    return f".{name}.{_host()}-{os.getpid()}."


# leftovers of a killed writer: staging folders and temp files that name their host and process
_STAGING = re.compile(r"^\..+\.staging-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[^/]*$")
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)\.[^./]+\.tmp$")


def remove_stale_leftovers(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Remove the staging folders and temp files that killed processes of this host (SIGKILL,
    power loss) left in ``folder`` (and below it, if ``recursive``); a live process's, and other
    hosts', are kept. A staging folder can hold a complete model without its receipt, so it must
    not linger."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in list(folder.rglob(".*") if recursive else folder.glob(".*")):
        match = _STAGING.match(entry.name) if entry.is_dir() else _TEMP.match(entry.name)
        if match and match["host"] == _host() and not _alive(int(match["pid"])):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
