"""Atomic file writes: a crashed job never leaves a half-written output behind.

Temporaries are named `.<name>.<host>-<pid>.<random>.tmp` beside their output, so that a later run can tell a
killed run's leftovers (`remove_stale_temporaries`) from a live concurrent writer's; outputs get the mode the
umask gives a new file (0644 under umask 022), not mkstemp's private 0600.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

STALE_SECONDS = 24 * 3600  # another machine's temporary untouched this long is a leftover (its pid is not ours)


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def _umask() -> int:
    """The process's umask (read from /proc where it can be, so no other thread sees it change)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it: shareable when the umask says so
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of `path` that killed writers left (`atomic_path`): this machine's whose process
    is gone, other machines' untouched for a day; a live writer's are kept. Returns the removed paths."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    host = _host()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        owner = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        tmp_host, _, pid = owner.rpartition("-")
        if tmp_host == host and pid.isdigit():
            stale = not _pid_alive(int(pid))
        else:  # another machine's (or the old unnamed format's): judge by age
            try:
                stale = time.time() - tmp.stat().st_mtime > STALE_SECONDS or (not tmp_host and not pid.isdigit())
            except FileNotFoundError:
                continue
        if stale:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` to `path` atomically (torch imported here: the JSON writers need none)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
