# SPDX-License-Identifier: MIT
"""The bad-input catalogue: every case goes through the real ``thoughtgrad`` entry point and
must exit 2 with exactly one ``error:`` line on stderr that names what is wrong (the file,
record or field, or the option), print no traceback, and leave an earlier finished run
byte-for-byte as it was."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import run_cli, snapshot, write_records


@dataclass(frozen=True)
class Fixtures:
    tmp: Path
    llama: Path
    data: Path
    run: Path

    def spectra(self, *extra: object, data: object = None, model: object = None,
                out: object = None) -> list[object]:
        """A spectra command on the tiny llama, with one thing changed."""
        return ["spectra", "--model", model or self.llama, "--data", data or self.data,
                "--out", out or self.tmp / "new", "--device", "cpu", *extra]


def _file(fx: Fixtures, name: str, content: str | bytes) -> Path:
    p = fx.tmp / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


def _model_copy(fx: Fixtures, name: str) -> Path:
    d = fx.tmp / name
    d.mkdir()
    for f in fx.llama.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    return d


def _truncated_weights(fx: Fixtures) -> Path:
    d = _model_copy(fx, "cut")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    return d


def _config(fx: Fixtures, edit: Callable[[dict], object] | str) -> Path:
    d = _model_copy(fx, "cfg")
    cfg = d / "config.json"
    if isinstance(edit, str):
        cfg.write_text(edit)
    else:
        c = json.loads(cfg.read_text())
        edit(c)
        cfg.write_text(json.dumps(c))
    return d


def _records(fx: Fixtures, name: str, records: object) -> Path:
    return _file(fx, name, json.dumps(records))


def _good(i: int = 0) -> dict[str, str]:
    return {"instruction": f"What is {i} + 1?", "input": "", "output": str(i + 1)}


def _readonly_dir(fx: Fixtures) -> Path:
    d = fx.tmp / "ro"
    d.mkdir()
    d.chmod(0o500)
    return d / "run"


def _other_command_run(fx: Fixtures) -> list[object]:
    return ["surprisal", "--model", fx.llama, "--data", fx.data, "--out", fx.run,
            "--device", "cpu"]


# name -> (argv builder, fragment the one error line must contain)
Case = tuple[Callable[[Fixtures], list[object]], str]
CASES: dict[str, Case] = {
    # data files
    "data file missing": (lambda fx: fx.spectra(data=fx.tmp / "nope.json"), "nope.json"),
    "data is a directory": (lambda fx: fx.spectra(data=fx.tmp), "is a directory"),
    "data truncated JSON": (
        lambda fx: fx.spectra(data=_file(fx, "cut.json", '[{"instruction": "a", "outp')),
        "cut.json"),
    "data JSON object, not a list": (
        lambda fx: fx.spectra(data=_records(fx, "obj.json", {"instruction": "a"})), "obj.json"),
    "data record is a number": (
        lambda fx: fx.spectra(data=_records(fx, "num.json", [_good(), 7])), "num.json"),
    "data record lacks output": (
        lambda fx: fx.spectra(data=_records(fx, "noout.json", [_good(), {"instruction": "x"}])),
        "output"),
    "data output a list": (
        lambda fx: fx.spectra(data=_records(fx, "int.json", [{"instruction": "x", "input": "",
                                                               "output": ["3"]}])), "output"),
    "data instruction missing": (
        lambda fx: fx.spectra(data=_records(fx, "noins.json", [{"input": "", "output": "1"}])),
        "instruction"),
    "data file empty": (lambda fx: fx.spectra(data=_file(fx, "empty.json", "")), "empty.json"),
    "data empty list": (lambda fx: fx.spectra(data=_records(fx, "none.json", [])), "none.json"),
    "data JSONL bad line": (
        lambda fx: fx.spectra(data=_file(fx, "bad.jsonl",
                                         json.dumps(_good()) + "\n{not json\n")), "bad.jsonl"),
    "data binary garbage": (
        lambda fx: fx.spectra(data=_file(fx, "bin.json", bytes(range(256)))), "bin.json"),
    "data not UTF-8": (
        lambda fx: fx.spectra(data=_file(fx, "latin.json", '[{"instruction": "caf\xe9"}]'
                                         .encode("latin-1"))), "latin.json"),
    "data unknown extension": (
        lambda fx: fx.spectra(data=_file(fx, "notes.txt", "hello")), "notes.txt"),
    "data corrupt parquet": (
        lambda fx: fx.spectra(data=_file(fx, "t.parquet", b"PAR1 not really")), "t.parquet"),
    "data condition count mismatch": (
        lambda fx: fx.spectra("--condition", "a", "--condition", "b"), "condition"),
    # models
    "model dir missing": (lambda fx: fx.spectra(model=fx.tmp / "nomodel"), "nomodel"),
    "model dir without config": (
        lambda fx: fx.spectra(model=(fx.tmp / "emptymodel").mkdir() or fx.tmp / "emptymodel"),
        "emptymodel"),
    "model config not JSON": (lambda fx: fx.spectra(model=_config(fx, "{oops")), "config"),
    "model type unknown": (
        lambda fx: fx.spectra(model=_config(fx, lambda c: c.update(model_type="nonesuch"))),
        "nonesuch"),
    "model weights truncated": (lambda fx: fx.spectra(model=_truncated_weights(fx)),
                                "model.safetensors"),
    "model gguf not a gguf": (
        lambda fx: fx.spectra(model=_file(fx, "fake.gguf", b"not a gguf file at all")),
        "fake.gguf"),
    "model gguf truncated": (
        lambda fx: fx.spectra(model=_file(fx, "short.gguf", b"GGUF\x03\x00\x00\x00")),
        "short.gguf"),
    "model pkg name unknown": (lambda fx: fx.spectra(model="pkg:no-such-model"),
                               "no-such-model"),
    # options
    "limit zero": (lambda fx: fx.spectra("--limit", "0"), "--limit"),
    "limit negative": (lambda fx: fx.spectra("--limit", "-3"), "--limit"),
    "batch tokens zero": (lambda fx: fx.spectra("--batch-tokens", "0"), "--batch-tokens"),
    "max length zero": (lambda fx: fx.spectra("--max-length", "0"), "--max-length"),
    "device unknown": (lambda fx: fx.spectra()[:-2] + ["--device", "toaster"], "toaster"),
    "device cuda absent": (lambda fx: fx.spectra()[:-2] + ["--device", "cuda"], "cuda"),
    "dtype unknown": (lambda fx: fx.spectra("--dtype", "fp8"), "fp8"),
    "loss span unknown": (lambda fx: fx.spectra("--loss-span", "middle"), "middle"),
    "role unknown": (lambda fx: fx.spectra("--roles", "q,zz"), "zz"),
    "answer pattern invalid regex": (lambda fx: fx.spectra("--loss-span", "answer",
                                                           "--answer-pattern", "(["), "(["),
    # run directories
    "out is a file": (lambda fx: fx.spectra(out=_file(fx, "plain.txt", "x")), "plain.txt"),
    "out not writable": (lambda fx: fx.spectra(out=_readonly_dir(fx)), "ro"),
    "resume with other settings": (
        lambda fx: fx.spectra("--loss-reduction", "sum", out=fx.run), "loss_reduction"),
    "out is another command's run": (_other_command_run, "spectra"),
    "compare missing run": (lambda fx: ["compare", fx.tmp / "gone", "--out", fx.tmp / "c"],
                            "gone"),
    "report dir without tables": (
        lambda fx: ["report", (fx.tmp / "bare").mkdir() or fx.tmp / "bare"], "bare"),
    # variants
    "variants out overwrites input": (
        lambda fx: ["variants", "--data", write_records(fx.tmp / "mine.json"), "--kind",
                    "none", "--out", fx.tmp / "mine.json"], "mine.json"),
    "variants unknown field": (
        lambda fx: ["variants", "--data", fx.data, "--kind", "none", "--out",
                    fx.tmp / "v.json", "--response-field", "answerz"], "answerz"),
    # toy lab
    "toy K range backwards": (lambda fx: ["toy", "--train-ks", "6-2", "--out", fx.tmp / "t"],
                              "6-2"),
    "toy task unknown": (lambda fx: ["toy", "--task", "division", "--out", fx.tmp / "t"],
                         "division"),
    "toy set unknown key": (lambda fx: ["toy", "--set", "train.nonesuch=1", "--out",
                                        fx.tmp / "t"], "nonesuch"),
    "toy set bad value": (lambda fx: ["toy", "--set", "train.steps=many", "--out",
                                      fx.tmp / "t"], "many"),
    "toy simulate zero layers": (lambda fx: ["toy", "simulate", "--layers", "0"], "layers"),
    "toy eval missing checkpoint": (
        lambda fx: ["toy", "eval", "--checkpoint", fx.tmp / "nock"], "nock"),
    # curvature
    "hessian top-k zero": (
        lambda fx: ["hessian", "--model", fx.llama, "--data", fx.data, "--top-k", "0",
                    "--device", "cpu"], "--top-k"),
    "hessian top-k beyond the parameters": (
        lambda fx: ["hessian", "--model", fx.llama, "--data", fx.data, "--top-k", "100000000",
                    "--method", "power", "--device", "cpu", "--out", fx.tmp / "h"],
        "100000000"),
    "hessian top-k beyond max-iter": (
        lambda fx: ["hessian", "--model", fx.llama, "--data", fx.data, "--top-k", "50",
                    "--max-iter", "10", "--device", "cpu", "--out", fx.tmp / "h"], "--max-iter"),
    "hessian data missing": (
        lambda fx: ["hessian", "--model", fx.llama, "--data", fx.tmp / "nodata.json",
                    "--device", "cpu"], "nodata.json"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line(name: str, tmp_path: Path, llama_dir: Path, good_data: Path,
                               spectra_run: Path, capsys) -> None:
    fx = Fixtures(tmp_path, llama_dir, good_data, spectra_run)
    before = snapshot(spectra_run)
    build, fragment = CASES[name]
    argv = build(fx)
    if name == "out not writable" and os.geteuid() == 0:
        pytest.skip("root can write to read-only directories")
    res = run_cli(argv, capsys)
    errors = [ln for ln in res.err.splitlines() if "error:" in ln]
    assert "Traceback" not in res.err, f"{name}: traceback\n{res.err}"
    assert res.rc == 2, f"{name}: exit {res.rc}\nstdout: {res.out}\nstderr: {res.err}"
    assert len(errors) == 1, f"{name}: expected one error line, got\n{res.err}"
    assert fragment in errors[0], f"{name}: {fragment!r} not in {errors[0]!r}"
    assert len(errors[0]) <= 600, f"{name}: error line of {len(errors[0])} characters"
    assert snapshot(spectra_run) == before, f"{name}: the earlier run changed"


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_hessian_json_is_strict_and_says_converged(tmp_path: Path, llama_dir: Path,
                                                   good_data: Path, capsys) -> None:
    """Too few iterations: the JSON still parses strictly (no NaN) and says converged false."""
    res = run_cli(["hessian", "--model", llama_dir, "--data", good_data, "--top-k", "2",
                   "--method", "power", "--max-iter", "2", "--trace-samples", "0", "--json",
                   "--device", "cpu", "--out", tmp_path / "h"], capsys)
    assert res.rc == 0, res.err

    def refuse(const: str) -> None:
        raise AssertionError(f"non-strict JSON constant {const}")

    obj = json.loads(res.out, parse_constant=refuse)
    assert obj["converged"] is False and obj["trace"] is None and len(obj["eigenvalues"]) == 2
