# SPDX-License-Identifier: MIT
"""gguf: provenance read from the file; a truncated or foreign file is one line naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thoughtgrad.errors import UserError
from thoughtgrad.models import gguf as tg_gguf
from thoughtgrad.models.hf import load_model, load_tokenizer, model_provenance

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install gguf)")


def write_gguf(path: Path, *, file_type: bool = True) -> Path:
    """A two-tensor GGUF (one F32, one Q8_0): enough for the reader, not a loadable model."""
    from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType

    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    if file_type:
        writer.add_file_type(LlamaFileType.MOSTLY_Q8_0)
    writer.add_tensor("a.weight", np.ones((64, 64), dtype=np.float32))
    rng = np.random.default_rng(0)
    quantised = gguf.quants.quantize(rng.random((32, 64), dtype=np.float32),
                                     GGMLQuantizationType.Q8_0)
    writer.add_tensor("b.weight", quantised, raw_dtype=GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_info_names_file_hash_and_quantisation(tmp_path):
    path = write_gguf(tmp_path / "tiny.gguf")
    info = tg_gguf.read_info(path)
    assert info.gguf_file == "tiny.gguf" and info.gguf_bytes == path.stat().st_size
    assert info.gguf_sha256 == tg_gguf.sha256_of(path) and len(info.gguf_sha256) == 64
    assert info.quantization == "Q8_0" and info.tensor_types == {"F32": 1, "Q8_0": 1}
    assert info.architecture == "llama" and info.general_name == "tiny"
    assert info.display_name() == "tiny (Q8_0 dequantised)"
    prov = model_provenance(path)
    assert prov["source"] == "gguf" and prov["gguf_sha256"] == info.gguf_sha256
    assert prov["quantization"] == "Q8_0" and prov["model"] == str(path.resolve())


def test_quantisation_from_tensor_types_without_file_type(tmp_path):
    info = tg_gguf.read_info(write_gguf(tmp_path / "t.gguf", file_type=False))
    assert info.quantization == "Q8_0"


def _truncated(tmp_path: Path, keep: int) -> Path:
    data = write_gguf(tmp_path / "full.gguf").read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:keep])  # keep < 0: all but the last -keep bytes
    return path


@pytest.mark.parametrize("keep", [8, 300, 5000, -1])
def test_truncated_gguf_is_one_line(tmp_path, keep, own_cache):
    path = _truncated(tmp_path, keep)
    for call in (tg_gguf.read_info, load_model, load_tokenizer):
        with pytest.raises(UserError) as err:
            call(path)
        msg = str(err.value)
        assert msg.startswith(f"model {path}: truncated") and "\n" not in msg, msg
    assert not own_cache.exists() or not list(own_cache.rglob("*.safetensors"))


@pytest.mark.parametrize("content", [b"", b"hello, not a model\n", b"PK\x03\x04zipfile"])
def test_not_a_gguf_is_one_line(tmp_path, content, own_cache):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_model(path)
    assert str(err.value) == (f"model {path}: not a GGUF file (it does not start with the "
                              "GGUF magic bytes)")


def test_missing_gguf_and_directory_named_gguf(tmp_path):
    with pytest.raises(UserError, match=r"no such \.gguf file"):
        load_model(tmp_path / "absent.gguf")
    with pytest.raises(UserError, match=r"no such \.gguf file"):
        load_tokenizer("absent.gguf")
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_model(tmp_path / "dir.gguf")


def test_other_file_is_one_line(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(UserError, match=r"weights.bin: not a directory or a \.gguf file"):
        load_model(path)
