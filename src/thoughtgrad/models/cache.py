# SPDX-License-Identifier: MIT
"""The model cache: directories built once (a dequantised GGUF) and read many times.

Layout, under :func:`cache_root` (``$THOUGHTGRAD_CACHE``, default ``~/.cache/thoughtgrad``)::

    models/<key>/                  one complete entry (key: the GGUF's sha256)
        config.json, model.safetensors, tokenizer files, provenance.json, ...
        COMPLETE                   written last: every file's size, as JSON
    models/.build-<key12>-<pid>-<random>/   an entry being built (or left by a killed build)

An entry is built in a temporary directory beside its final place, every file is fsynced,
the ``COMPLETE`` marker (listing each file's size) is written and fsynced, and only then is
the directory renamed into place. So a build killed at any point leaves only a ``.build-*``
directory, which is never read and is removed by the next build once its process is gone.
An entry whose marker is missing or whose files no longer have the recorded sizes (a
truncated copy, a half-deleted directory) counts as absent and is rebuilt, never loaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from thoughtgrad.errors import UserError

log = logging.getLogger(__name__)

CACHE_ENV = "THOUGHTGRAD_CACHE"
"""Environment variable naming the cache root."""

MARKER = "COMPLETE"
"""File written last in a finished entry: JSON ``{relative path: size in bytes}``."""

BUILD_PREFIX = ".build-"


def cache_root() -> Path:
    """``$THOUGHTGRAD_CACHE``, else ``~/.cache/thoughtgrad`` (not created here)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "thoughtgrad"


def models_dir() -> Path:
    """Where the model entries live."""
    return cache_root() / "models"


def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MARKER}


def is_complete(entry: Path) -> bool:
    """True when ``entry`` has its marker and every file it lists has the recorded size."""
    try:
        recorded = json.loads((entry / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or not recorded:
        return False
    for rel, size in recorded.items():
        try:
            if (entry / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def entry_path(key: str) -> Path:
    """The final directory of entry ``key`` (which may not exist)."""
    return models_dir() / key


def cached(key: str) -> Path | None:
    """The complete entry ``key``, or None."""
    entry = entry_path(key)
    return entry if is_complete(entry) else None


def entry_size(entry: Path) -> int:
    """Bytes on disk of an entry's files."""
    return sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())


def _fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_builds(parent: Path) -> list[Path]:
    """Delete ``.build-*`` directories whose building process is gone; return them."""
    removed = []
    for path in parent.glob(BUILD_PREFIX + "*"):
        try:
            pid = int(path.name[len(BUILD_PREFIX):].split("-")[1])
        except (IndexError, ValueError):
            pid = -1
        if pid == os.getpid() or (pid > 0 and _alive(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def ensure_writable(parent: Path) -> None:
    """Create ``parent`` if needed; a one-line error when files cannot be written in it."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".probe-"):
            pass
    except OSError as exc:
        raise UserError(f"model cache {parent}: not writable ({exc.strerror or exc}); set "
                        f"{CACHE_ENV} to a writable directory") from None


def build_dir(tag: str) -> Path:
    """A new empty ``.build-<tag>-<pid>-<random>`` directory under :func:`models_dir`.

    ``tag`` has no ``-``; the pid lets :func:`remove_stale_builds` spare live builds.
    """
    return Path(tempfile.mkdtemp(dir=models_dir(), prefix=f"{BUILD_PREFIX}{tag}-{os.getpid()}-"))


def build_entry(key: str, build: Callable[[Path], None]) -> Path:
    """The complete entry ``key``, built with ``build(directory)`` when absent.

    ``build`` fills an empty temporary directory; the entry appears at its final path only
    when complete (see the module docstring). A stale or damaged entry is replaced.
    """
    entry = cached(key)
    if entry is not None:
        return entry
    parent = models_dir()
    ensure_writable(parent)
    for stale in remove_stale_builds(parent):
        log.warning("removed an unfinished cache build %s (its process is gone)", stale)
    tmp = build_dir(key[:12])
    try:
        build(tmp)
        sizes = _files(tmp)
        _fsync_tree(tmp)
        marker = tmp / MARKER
        marker.write_text(json.dumps(sizes, indent=1, sort_keys=True))
        with open(marker, "rb") as fh:
            os.fsync(fh.fileno())
        mask = _umask()  # mkdtemp makes 0700 and some writers 0600: share like other files
        tmp.chmod(0o777 & ~mask)
        for path in tmp.rglob("*"):
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
        _fsync_dir(tmp)
        final = entry_path(key)
        if final.exists():
            if is_complete(final):  # another process finished first: keep its entry
                shutil.rmtree(tmp, ignore_errors=True)
                return final
            log.warning("replacing the incomplete cache entry %s", final)
            aside = build_dir("old")
            os.replace(final, aside / "entry")
            shutil.rmtree(aside, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
