# SPDX-License-Identifier: MIT
"""cache: entries appear only when complete; a killed or damaged build is rebuilt, not read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thoughtgrad.errors import UserError
from thoughtgrad.models import cache

KEY = "ab" * 32


def _writer(calls: list[int]):
    def build(directory: Path) -> None:
        calls.append(1)
        (directory / "weights.bin").write_bytes(b"x" * 1000)
        (directory / "sub").mkdir()
        (directory / "sub" / "config.json").write_text("{}")
    return build


def test_build_once_then_read(own_cache):
    calls: list[int] = []
    entry = cache.build_entry(KEY, _writer(calls))
    assert entry == own_cache / "models" / KEY and cache.is_complete(entry)
    marker = json.loads((entry / cache.MARKER).read_text())
    assert marker == {"sub/config.json": 2, "weights.bin": 1000}
    assert cache.build_entry(KEY, _writer(calls)) == entry
    assert calls == [1]
    assert not list((own_cache / "models").glob(cache.BUILD_PREFIX + "*"))


@pytest.mark.parametrize("damage", ["no marker", "truncated file", "missing file",
                                    "garbage marker"])
def test_damaged_entry_is_rebuilt_never_read(own_cache, damage):
    calls: list[int] = []
    entry = cache.build_entry(KEY, _writer(calls))
    if damage == "no marker":
        (entry / cache.MARKER).unlink()
    elif damage == "truncated file":
        (entry / "weights.bin").write_bytes(b"x" * 10)
    elif damage == "missing file":
        (entry / "sub" / "config.json").unlink()
    else:
        (entry / cache.MARKER).write_text("{not json")
    assert cache.cached(KEY) is None
    assert cache.build_entry(KEY, _writer(calls)) == entry
    assert calls == [1, 1] and cache.is_complete(entry)
    assert (entry / "weights.bin").stat().st_size == 1000


def test_failed_build_leaves_nothing(own_cache):
    def boom(directory: Path) -> None:
        (directory / "half.bin").write_bytes(b"x")
        raise UserError("cannot build")

    with pytest.raises(UserError, match="cannot build"):
        cache.build_entry(KEY, boom)
    assert cache.cached(KEY) is None
    assert not list((own_cache / "models").iterdir())


KILLED_BUILD = """
import sys, time
from pathlib import Path
from thoughtgrad.models import cache

def build(d):
    (d / "weights.bin").write_bytes(b"x" * 100)
    Path(sys.argv[1]).write_text("started")
    time.sleep(60)

cache.build_entry(sys.argv[2], build)
"""


def test_sigkilled_build_is_detected_and_rebuilt(own_cache, tmp_path):
    """A real SIGKILL mid-build: no entry appears, and the next build cleans up and works."""
    flag = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(flag), KEY], env=env)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "builder did not start"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    models = own_cache / "models"
    assert [p.name.startswith(cache.BUILD_PREFIX) for p in models.iterdir()] == [True]
    assert cache.cached(KEY) is None
    calls: list[int] = []
    entry = cache.build_entry(KEY, _writer(calls))
    assert calls == [1] and cache.is_complete(entry)
    assert [p.name for p in models.iterdir()] == [KEY]


def test_live_build_of_another_process_is_spared(own_cache):
    models = own_cache / "models"
    models.mkdir(parents=True)
    live = models / f"{cache.BUILD_PREFIX}{KEY[:12]}-{os.getppid()}-x"
    live.mkdir()
    assert cache.remove_stale_builds(models) == []
    assert live.is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_cache_not_writable_is_one_line(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    try:
        with pytest.raises(UserError, match=r"model cache .*ro/models: not writable"):
            cache.build_entry(KEY, _writer([]))
    finally:
        root.chmod(0o700)


def test_cache_root_is_a_file_is_one_line(tmp_path, monkeypatch):
    """(Also covers the non-writable case when the tests run as root.)"""
    root = tmp_path / "file"
    root.write_text("not a directory")
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    with pytest.raises(UserError) as err:
        cache.build_entry(KEY, _writer([]))
    assert f"model cache {root}/models: not writable" in str(err.value)
    assert "THOUGHTGRAD_CACHE" in str(err.value)


def test_default_root(monkeypatch):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    assert cache.cache_root() == Path.home() / ".cache" / "thoughtgrad"
