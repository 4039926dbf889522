# SPDX-License-Identifier: MIT
"""Command-line options generated from config dataclasses, so a setting is declared once.

A config field's name gives the flag (``batch_tokens`` -> ``--batch-tokens``), its type
the parsing (``int``, ``float``, ``str``, ``bool`` -> a switch, ``tuple[int, ...]`` ->
``2-6`` or ``1,2,4``, ``tuple[str, ...]`` -> comma-separated), its docstring (the string
literal under the field) the help, and the config instance passed in the default shown
in ``--help``. Options that are not given stay out of the namespace
(``argparse.SUPPRESS``), so `given_options` changes only what was typed, and a
subcommand's copy of an option leaves what was given before the subcommand alone.
Every subcommand also takes ``--set key=value`` (:func:`add_set_option`), applied last.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from thoughtgrad.cli.common import int_list

C = TypeVar("C")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` (and of its bases), one line."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # pragma: no cover - classes built at run time
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _field_type(annotation: Any) -> tuple[Any, bool]:
    """``(the type without None, whether None is allowed)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0], len(inner) < len(typing.get_args(annotation))
    return annotation, False


def _parser_for(annotation: Any) -> Callable[[str], Any] | None:
    kind, _ = _field_type(annotation)
    if typing.get_origin(kind) is tuple or kind is tuple:
        (item, *_) = typing.get_args(kind) or (str,)
        if item is int:
            return lambda text: tuple(int_list(text))
        return lambda text: tuple(s.strip() for s in text.split(",") if s.strip())
    if kind in (int, float, str):
        return kind
    return None


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def add_config_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config: Any,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    prefix: str = "",
    flags: Mapping[str, str] | None = None,
    types_: Mapping[str, Callable[[str], Any]] | None = None,
    choices: Mapping[str, Iterable[Any]] | None = None,
    required: Iterable[str] = (),
    repeat: Iterable[str] = (),
    metavars: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
) -> None:
    """Add one option per field of the dataclass instance ``config``.

    ``only`` picks and orders the fields (default: all but ``skip``); ``prefix`` is the
    dotted path of a nested config (``"train."``), kept in the option's dest. Per field:
    ``flags`` renames the flag, ``types_`` gives a stricter parser (``positive_int``),
    ``choices`` the allowed values, ``required`` makes it required, ``repeat`` makes a
    tuple field repeatable (``--data A --data B``), ``metavars`` names the value and
    ``defaults`` replaces the shown default (when it depends on the input). A ``bool``
    field that defaults to true becomes ``--no-<name>``; a ``bool | None`` field that defaults
    to None (decided later) takes both ``--<name>`` and ``--no-<name>``.
    """
    cls = type(config)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    names = list(only) if only is not None else [
        f.name for f in dataclasses.fields(cls) if f.name not in set(skip)]
    flags, types_, choices = flags or {}, types_ or {}, choices or {}
    metavars, defaults = metavars or {}, defaults or {}
    required, repeat = set(required), set(repeat)
    for name in names:
        value = getattr(config, name)
        doc = docs.get(name, "")
        flag = flags.get(name, "--" + name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": prefix + name, "default": argparse.SUPPRESS}
        kind, _ = _field_type(hints[name])
        if kind is bool:
            if value is None:  # unset means "decided later": --name / --no-name
                kwargs["action"] = argparse.BooleanOptionalAction
            elif value:
                flag = flags.get(name, "--no-" + name.replace("_", "-"))
                kwargs["action"], doc = "store_false", f"turn off (on by default): {doc}"
            else:
                kwargs["action"] = "store_true"
            parser.add_argument(flag, help=doc, **kwargs)
            continue
        if name in repeat:
            kwargs["action"] = "append"
        else:
            kwargs["type"] = types_.get(name) or _parser_for(hints[name])
        if name in choices:
            kwargs["choices"] = list(choices[name])
        if name not in choices:
            kwargs["metavar"] = metavars.get(name, flag.lstrip("-").replace("-", "_").upper())
        if name in required:
            kwargs["required"] = True
            shown = ""
        elif name in defaults:
            shown = f" [default: {defaults[name]}]"
        elif value is None:
            shown = ""
        else:
            shown = f" [default: {_shown(value)}]"
        parser.add_argument(flag, help=doc + shown, **kwargs)


def given_options(config: C, args: argparse.Namespace, *, prefix: str = "") -> C:
    """``config`` with every option given on the command line (nested configs by their
    dotted dest) applied; a repeated tuple option becomes a tuple."""
    changes: dict[str, Any] = {}
    given = vars(args)
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        key = prefix + f.name
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and any(k.startswith(key + ".") for k in given):
            changes[f.name] = given_options(value, args, prefix=key + ".")
        elif key in given:
            new = given[key]
            changes[f.name] = tuple(new) if isinstance(new, list) else new
    return dataclasses.replace(config, **changes) if changes else config  # type: ignore[type-var]


def add_set_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                   sub: bool = False, example: str = "train.warmup_steps=50") -> None:
    """``--set key=value`` (repeatable): any config field, dotted for nested ones. A
    subcommand's list (``sub``) is kept apart and applied after its parent's."""
    parser.add_argument("--set", dest="sub_overrides" if sub else "overrides", action="append",
                        default=argparse.SUPPRESS, metavar="KEY=VALUE",
                        help=f"override any config field, e.g. --set {example} "
                             "(repeatable; applied after the other options)")


def overrides_of(args: argparse.Namespace) -> list[str]:
    """Every ``--set`` given, the parent command's first."""
    return [*(getattr(args, "overrides", None) or []),
            *(getattr(args, "sub_overrides", None) or [])]


def from_args(config: C, args: argparse.Namespace) -> C:
    """``config`` with the options given (:func:`given_options`), then every ``--set``."""
    from thoughtgrad.config import apply_overrides

    return apply_overrides(given_options(config, args), overrides_of(args))
