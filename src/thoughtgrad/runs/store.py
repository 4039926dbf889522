# SPDX-License-Identifier: MIT
"""The run directory: ``manifest.json`` plus tidy Parquet tables.

Layout (see ``docs/architecture.md``)::

    runs/<name>/
      manifest.json          config, seed, versions, model id, data hashes, status
      <table>.parquet/       a directory of shards part-00000.parquet, ... (appendable)
      <table>.parquet        or a single file for tables written once
      figures/

Every table can be read with ``pandas.read_parquet(path)`` whether it is a file or a
directory of shards. Appending writes a new shard atomically (write to a temp name,
then rename), so a killed run keeps every shard it finished and loses nothing.

What a run directory guarantees (``docs/architecture.md`` lists it for users):

* **One commit point per batch.** :meth:`RunDir.append_batch` writes the shards of several
  tables (a spectra batch's ``spectra`` and ``spectra_samples`` rows) under temporary
  names, then creates one commit record ``.batches/<index>``, then renames the shards. A
  kill before the record leaves only temporary files, deleted at the next
  :meth:`RunDir.create`; a kill after it leaves shards that the next ``create`` renames.
  No kill leaves one table of a batch written without the other.
* **Checked shards.** A shard that cannot be read (cut short, overwritten) is moved to
  ``<table>.parquet/_quarantine/`` by a writer (its rows are then measured again by the
  resumed run) and skipped with a warning by a reader; neither loses the good shards.
* **Settings without the manifest.** The identity (the settings that shape the numbers)
  is also kept in ``.identity.json``: a run whose ``manifest.json`` was deleted is still
  checked against it, and a directory holding tables with neither is refused.
* **One command per directory.** A run directory made by one command is refused by another.
* **Many writers.** Each process of a launched job (:mod:`thoughtgrad.distributed`) opens
  the directory with its own ``writer`` tag: its shards are ``part-NNNNN-<writer>.parquet``
  and its commit records ``.batches/NNNNN-<writer>``, so processes appending at once never
  pick the same name; readers (this module, ``pandas.read_parquet``) see one table.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from thoughtgrad.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
IDENTITY = ".identity.json"
"""A copy of the run's command and identity, so a deleted manifest does not let a resume
with other settings mix its rows into the run."""
BATCHES = ".batches"
"""Commit records of multi-table batches (:meth:`RunDir.append_batch`)."""
QUARANTINE = "_quarantine"
"""Where a writer moves an unreadable shard (pyarrow skips names starting with ``_``)."""
STATUSES = ("running", "completed", "failed", "interrupted")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the numbers."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("thoughtgrad", "torch", "transformers", "tokenizers", "numpy", "pandas"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes; a file unchanged in size and mtime since it was last
    hashed by this process is not read again (a run checks its data more than once)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a manifest is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class RunDir:
    """One run directory: the manifest and the run's tables.

    Create with :meth:`create` (a new or resumed run) or :meth:`open` (read an existing
    one). Library code appends rows; the CLI sets the status.
    """

    def __init__(self, path: str | os.PathLike[str], *, writer: str = "") -> None:
        self.path = Path(path)
        self.writer = writer
        """Tag in the names of the shards this object appends (one per process of a
        launched job; empty: plain ``part-NNNNN``)."""

    def _stem(self, idx: int) -> str:
        """A shard's name without ``part-`` and ``.parquet``; also its batch record's name."""
        return f"{idx:05d}-{self.writer}" if self.writer else f"{idx:05d}"

    # -- creation -----------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, command: str, config: Any = None,
               seed: int | None = None, identity: Mapping[str, Any] | None = None,
               **extra: Any) -> RunDir:
        """Make (or reopen for resuming) a run directory and write its manifest.

        Fails with a one-line :class:`UserError` when the directory cannot be written.
        An existing manifest is kept and updated (resume), never replaced. ``identity``
        holds the settings that shape the numbers: a directory whose manifest records a
        different identity is refused (one line naming the changed settings) before
        anything is written, so a resumed run can never mix results of two settings.
        """
        run = cls(path)
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            probe = run.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"output directory {run.path} is not writable: "
                            f"{exc.strerror or exc}") from None
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        manifest = run.manifest() if (run.path / MANIFEST).exists() else run._from_sidecar()
        resumed = bool(manifest)
        if resumed and manifest.get("command", command) != command:
            raise UserError(f"{run.path}: holds a {manifest['command']!r} run; "
                            f"'{command}' writes its own run directory: use another --out")
        if identity is not None:
            check_identity(run.path, manifest, identity)
            manifest["identity"] = _jsonable(identity)
        manifest.setdefault("created", now)
        manifest.update({
            "command": command,
            "config": _jsonable(config.__dict__ if hasattr(config, "__dataclass_fields__")
                                else config) if config is not None else manifest.get("config"),
            "seed": seed,
            "versions": package_versions(),
            "status": "running",
            "updated": now,
        })
        if hasattr(config, "__dataclass_fields__"):
            import dataclasses
            manifest["config"] = _jsonable(dataclasses.asdict(config))
        if resumed:
            manifest["resumed"] = int(manifest.get("resumed", 0)) + 1
        manifest.update(_jsonable(extra))
        run.write_manifest(manifest)
        run.recover()
        return run

    def _from_sidecar(self) -> dict[str, Any]:
        """The manifest's command and identity from :data:`IDENTITY` when the manifest is
        gone ({} for a new directory); a directory with tables and neither is refused."""
        side = self.path / IDENTITY
        if side.is_file():
            try:
                kept = json.loads(side.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                kept = None
            if isinstance(kept, dict) and "command" in kept:
                log.warning("%s: no %s; its settings are checked against %s", self.path,
                            MANIFEST, IDENTITY)
                return {k: kept[k] for k in ("command", "identity", "created") if k in kept}
        if any(self.path.glob("*.parquet")):
            raise UserError(f"{self.path}: holds tables but no {MANIFEST}, so the settings "
                            "they were made with are unknown; use another --out")
        return {}

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """Open an existing run directory for reading (reports, compare)."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(f"{run.path}: not a run directory (it does not exist)")
        return run

    # -- manifest -----------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest as a dict ({} when there is none)."""
        p = self.path / MANIFEST
        if not p.exists():
            return {}
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}: corrupt manifest ({exc.msg} at line {exc.lineno})") from None

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write the manifest (and its :data:`IDENTITY` copy) atomically: a failed write
        leaves the previous one in place and is a one-line error."""
        kept = {k: manifest[k] for k in ("command", "identity", "created") if k in manifest}
        side = self.path / IDENTITY
        text = json.dumps(_jsonable(kept), indent=2) + "\n"
        try:
            _atomic_write_text(self.path / MANIFEST,
                               json.dumps(_jsonable(manifest), indent=2) + "\n")
            if kept and (not side.is_file() or side.read_text(encoding="utf-8") != text):
                _atomic_write_text(side, text)
        except OSError as exc:
            raise UserError(f"{self.path / MANIFEST}: cannot write ({exc.strerror or exc}); "
                            "rows written earlier are kept") from None

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the manifest (top level) and write it atomically."""
        m = self.manifest()
        m.update(_jsonable(fields))
        m["updated"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self.write_manifest(m)
        return m

    def set_status(self, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        self.update_manifest(status=status, **fields)

    @contextlib.contextmanager
    def recording(self) -> Iterator[RunDir]:
        """Run a block of work on this run: when it raises, the manifest says
        ``interrupted`` (Ctrl-C, or SIGTERM turned into KeyboardInterrupt by the CLI) or
        ``failed``, with the error's text, and the exception goes on. Recording
        ``completed`` (with its summary fields) is left to the caller."""
        try:
            yield self
        except BaseException as exc:
            self.set_status("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                            error=str(exc))
            raise

    # -- tables -------------------------------------------------------------------
    def table_path(self, name: str) -> Path:
        return self.path / f"{name}.parquet"

    def has_table(self, name: str) -> bool:
        p = self.table_path(name)
        return p.is_file() or (p.is_dir() and any(p.glob("part-*.parquet")))

    def append(self, name: str, rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> Path | None:
        """Append rows to table ``name`` as a new shard; return the shard path.

        The shard is written under a temporary name and renamed, so readers never see
        half a shard. Empty input writes nothing.
        """
        written = self.append_batch({name: rows})
        return written.get(name)

    def append_batch(self, tables: Mapping[str, pd.DataFrame | Iterable[Mapping[str, Any]]]
                     ) -> dict[str, Path]:
        """Append one shard to each of several tables with ONE commit point.

        Every shard is written under a temporary name; then the commit record
        ``.batches/<index>`` is created; then the shards are renamed. Before the record
        exists, the batch is not there (its temporary files are deleted by
        :meth:`recover`); after it, the batch is there in every table (:meth:`recover`
        finishes the renames). Empty tables are left out; returns the final shard paths.
        """
        frames = {name: rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
                  for name, rows in tables.items()}
        frames = {name: df for name, df in frames.items() if not df.empty}
        if not frames:
            return {}
        for name in frames:
            d = self.table_path(name)
            if d.is_file():
                raise UserError(f"{d}: is a single-file table; cannot append shards to it")
            d.mkdir(parents=True, exist_ok=True)
        idx = self._next_index(frames)
        pending = []
        try:
            for name, df in frames.items():
                d = self.table_path(name)
                tmp = d / f".part-{self._stem(idx)}.parquet.tmp"
                pending.append((tmp, d / f"part-{self._stem(idx)}.parquet"))
                df.to_parquet(tmp, index=False)
            if len(pending) > 1:
                record = self.path / BATCHES / self._stem(idx)
                record.parent.mkdir(exist_ok=True)
                _atomic_write_text(record, json.dumps(sorted(frames)) + "\n")
        except OSError as exc:  # disk full, quota, permissions: the batch is not there
            for tmp, _ in pending:
                tmp.unlink(missing_ok=True)
            raise UserError(f"{self.path}: cannot write {', '.join(frames)} "
                            f"({exc.strerror or exc}); rows written earlier are kept, re-run "
                            "to resume") from None
        for tmp, target in pending:
            os.replace(tmp, target)
        return {name: target for name, (_, target) in zip(frames, pending, strict=True)}

    def _next_index(self, names: Iterable[str]) -> int:
        """One more than the largest shard index of these tables and of any batch record
        (of every writer: an index is unique per writer, the tag makes names unique)."""
        used = [-1]
        for name in names:
            used += [int(p.name.split("-")[1].split(".")[0])
                     for p in self.table_path(name).glob("*part-*.parquet*")]
        batches = self.path / BATCHES
        if batches.is_dir():
            used += [int(p.name.split("-")[0]) for p in batches.iterdir()
                     if p.name.split("-")[0].isdigit()]
        return max(used) + 1

    def recover(self) -> None:
        """Finish or undo what a killed writer left: a temporary shard whose batch has a
        commit record is renamed into place, any other is deleted."""
        batches = self.path / BATCHES
        for tmp in self.path.glob("*.parquet/.part-*.parquet.tmp"):
            stem = tmp.name[len(".part-"):-len(".parquet.tmp")]
            if (batches / stem).is_file():
                os.replace(tmp, tmp.with_name(tmp.name[1:-len(".tmp")]))
            else:
                tmp.unlink()

    def write(self, name: str, df: pd.DataFrame) -> Path:
        """Write table ``name`` as one file, replacing any previous version atomically."""
        target = self.table_path(name)
        if target.is_dir():
            import shutil
            shutil.rmtree(target)
        tmp = target.with_name(f".{target.name}.tmp")
        df.to_parquet(tmp, index=False)
        os.replace(tmp, target)
        return target

    def replace_rows(self, name: str, column: str, value: Any, rows: pd.DataFrame) -> pd.DataFrame:
        """Table ``name`` with its rows where ``column == value`` replaced by ``rows``.

        Other rows are kept, in their order, before the new ones; the table is written
        back as one file and returned. Rerunning one condition or regime of a run this
        way never duplicates its rows. No table and no rows: nothing is written.
        """
        if self.has_table(name):
            old = self.read(name)
            if column in old:
                old = old[old[column] != value]
            parts = [df for df in (old, rows) if not df.empty]
            rows = pd.concat(parts, ignore_index=True) if parts else rows
        elif rows.empty:
            return rows
        self.write(name, rows)
        return rows

    def read(self, name: str, columns: list[str] | None = None, *,
             quarantine: bool = False, notes: list[str] | None = None) -> pd.DataFrame:
        """Read table ``name`` (file or shard directory) into one DataFrame.

        An unreadable shard is skipped with a warning (also appended to ``notes``); with
        ``quarantine`` (a writer that will measure its rows again) it is also moved to
        ``_quarantine/``.
        """
        moved: list[Path] = []
        df = read_table(self.table_path(name), columns=columns, quarantine=quarantine,
                        notes=notes, quarantined=moved)
        for shard in moved:  # the rest of its batch goes too, or a resume would repeat it
            record = self.path / BATCHES / shard.name[len("part-"):-len(".parquet")]
            if not record.is_file():
                continue
            for other in json.loads(record.read_text(encoding="utf-8")):
                sibling = self.table_path(other) / shard.name
                if other != name and sibling.is_file():
                    dest = sibling.parent / QUARANTINE / sibling.name
                    dest.parent.mkdir(exist_ok=True)
                    os.replace(sibling, dest)
                    log.warning("%s: moved to %s with the rest of its batch", sibling, dest)
        return df

    def check(self, *names: str) -> None:
        """Read these tables once as a writer: unreadable shards, and the shards of the
        same batch in the other tables, are quarantined before a resume counts its rows."""
        for name in names:
            if self.has_table(name):
                self.read(name, quarantine=True)

    def figures_dir(self) -> Path:
        d = self.path / "figures"
        d.mkdir(parents=True, exist_ok=True)
        return d


def check_identity(path: Path, manifest: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
    """Refuse (one line) to continue the run in ``path`` with settings other than its own.

    A setting absent from the recorded identity counts as None, so a run made before a
    new setting existed resumes while that setting stays unset. A run directory made before
    the shared ``identity`` key recorded it as ``<command>_identity`` (spectra, demo).
    """
    before = manifest.get("identity") or manifest.get(f"{manifest.get('command')}_identity")
    now = _jsonable(identity)
    if before is None or before == now:
        return
    before, now = _flat(before), _flat(now)
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if not changed:  # only settings added since, at their unset (None) default
        return
    detail = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    raise UserError(f"{path}: holds a {manifest.get('command', 'thoughtgrad')!r} run made with "
                    f"other settings ({detail}{more}); use a new --out, or the same settings "
                    "to resume it")


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys: {"train": {"lr": 1}} -> {"train.lr": 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def read_table(path: str | os.PathLike[str], columns: list[str] | None = None, *,
               quarantine: bool = False, notes: list[str] | None = None,
               quarantined: list[Path] | None = None) -> pd.DataFrame:
    """Read a Parquet table that is a file or a directory of ``part-*.parquet`` shards.

    Each shard is checked as it is read: an unreadable one (cut short by a full disk,
    overwritten) is skipped with a one-line warning (also appended to ``notes``), and with
    ``quarantine`` moved to ``<table>/_quarantine/`` so that plain ``pandas.read_parquet``
    of the directory works again. An unreadable single-file table is a one-line error.
    """
    p = Path(path)
    if p.is_file():
        try:
            return pd.read_parquet(p, columns=columns)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
            raise UserError(f"{p}: unreadable table ({_first_line(exc)})") from None
    if p.is_dir():
        frames = []
        for f in sorted(p.glob("part-*.parquet")):
            try:
                frames.append(pd.read_parquet(f, columns=columns))
            except Exception as exc:  # noqa: BLE001
                msg = f"{f}: unreadable shard skipped ({_first_line(exc)})"
                if quarantine:
                    dest = p / QUARANTINE / f.name
                    dest.parent.mkdir(exist_ok=True)
                    os.replace(f, dest)
                    msg = f"{f}: unreadable shard moved to {dest}; its rows are measured again"
                    if quarantined is not None:
                        quarantined.append(f)
                log.warning("%s", msg)
                if notes is not None:
                    notes.append(msg)
        if not frames:
            return pd.DataFrame(columns=columns or [])
        return pd.concat(frames, ignore_index=True)
    raise UserError(f"{p}: no such table")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
