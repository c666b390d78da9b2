"""Sphinx directives that list the generated message modules, read at build time.

``.. ocpp-actions:: 2.0.1`` makes the table of a version's actions (who sends each, and its
classes, linked to their entries);
``.. ocpp-classes:: 2.0.1 payloads`` (or ``datatypes``, ``enums``) lists those classes of the
module, each with its constructor's signature (the fields, typed, cross-referenced) or, for an
enum, its members and their wire values.

The classes carry no docstrings (the schemas' prose is not copied), so the listing is written
from the classes themselves (``attrs.fields``, the action registry) as ``py:class`` entries:
cheaper than autodoc for some 800 classes, and the same entries (index, search, references).
They stay out of the pages' tables of contents, which every page's navigation copies.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import attrs
from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

SENDER = {"station->csms": "station", "csms->station": "CSMS", "both": "either"}
KINDS = ("payloads", "datatypes", "enums")


def _module(version: str) -> ModuleType:
    return importlib.import_module("ocpp_trio.messages.v" + version.replace(".", "_"))


def _classes(module: ModuleType) -> list[type]:
    return [obj for name in module.__all__ if isinstance(obj := getattr(module, name), type)]


def _signature(cls: type) -> str:
    params = []
    for field in attrs.fields(cls):
        text = f"{field.alias}: {str(field.type).replace('_dt.', 'datetime.')}"
        factory = getattr(field.default, "factory", None)  # an attrs.Factory: show its value
        if callable(factory):
            text += f" = {factory()!r}"
        elif field.default is not attrs.NOTHING:
            text += f" = {field.default!r}"
        params.append(text)
    return f"(*, {', '.join(params)})" if params else "()"


def _payloads(module: ModuleType) -> Iterator[tuple[type, str]]:
    for name, spec in sorted(module.ACTIONS.items()):
        sender = SENDER[spec.direction.value]
        if spec.response is None:
            yield spec.request, f"**{name}**, a SEND from the {sender}: never answered."
            continue
        answer = f":class:`{spec.response.__name__}`"
        yield spec.request, f"The CALL **{name}**, sent by the {sender}; answered with {answer}."
        yield spec.response, f"The answer to :class:`{spec.request.__name__}`."


def _entries(module: ModuleType, kind: str) -> list[tuple[type, str]]:
    """The classes of one kind, each with the sentence that introduces it."""
    from ocpp_trio.messages import Message

    if kind == "payloads":
        return list(_payloads(module))
    if kind == "datatypes":
        return [
            (cls, "") for cls in _classes(module) if attrs.has(cls) and not issubclass(cls, Message)
        ]
    return [(cls, "") for cls in _classes(module) if issubclass(cls, enum.Enum)]


def _unlisted(module: ModuleType) -> list[str]:
    """The classes of the module that no kind lists, or that two list."""
    listed = [cls.__name__ for kind in KINDS for cls, _ in _entries(module, kind)]
    expected = [cls.__name__ for cls in _classes(module)]
    return sorted(set(expected) ^ set(listed)) + sorted({n for n in listed if listed.count(n) > 1})


def _listing(module: ModuleType, kind: str) -> Iterator[str]:
    yield f".. py:currentmodule:: {module.__name__}"
    yield ""
    entries = _entries(module, kind)
    for cls, text in entries:
        if issubclass(cls, enum.Enum):
            yield f".. py:class:: {cls.__name__}"
            yield "   :no-contents-entry:"
            yield ""
            members = ", ".join(f'``{m.name}`` = ``"{m.value}"``' for m in cls)
            yield f"   A ``StrEnum``: {members}."
        else:
            yield f".. py:class:: {cls.__name__}{_signature(cls)}"
            yield "   :no-contents-entry:"
            if text:
                yield ""
                yield f"   {text}"
        yield ""


class _Generated(SphinxDirective):
    def _parse(self, lines: Iterator[str]) -> list[Any]:
        source = StringList()
        for line in lines:
            source.append(line, f"<{self.name} {' '.join(self.arguments)}>")
        holder = nodes.Element()
        self.state.nested_parse(source, self.content_offset, holder)
        return list(holder.children)


class OcppActions(_Generated):
    """``.. ocpp-actions:: 2.0.1``: a table of the version's actions."""

    required_arguments = 1

    def run(self) -> list[Any]:
        module = _module(self.arguments[0])
        if unlisted := _unlisted(module):
            raise self.error(f"{module.__name__}: not listed once by ocpp-classes: {unlisted}")
        return self._parse(self._table(module))

    @staticmethod
    def _table(module: ModuleType) -> Iterator[str]:
        yield f".. py:currentmodule:: {module.__name__}"
        yield ""
        yield ".. list-table::"
        yield "   :header-rows: 1"
        yield "   :widths: 30 15 55"
        yield ""
        yield "   * - action"
        yield "     - sent by"
        yield "     - classes"
        for name, spec in sorted(module.ACTIONS.items()):
            classes = f":class:`{spec.request.__name__}`"
            if spec.response is None:
                classes += " (SEND, never answered)"
            else:
                classes += f" / :class:`{spec.response.__name__}`"
            yield f"   * - {name}"
            yield f"     - {SENDER[spec.direction.value]}"
            yield f"     - {classes}"
        yield ""


class OcppClasses(_Generated):
    """``.. ocpp-classes:: 2.0.1 datatypes``: every class of that kind in the version's module."""

    required_arguments = 2

    def run(self) -> list[Any]:
        version, kind = self.arguments
        if kind not in KINDS:
            raise self.error(f"ocpp-classes: the kind is one of {', '.join(KINDS)}, not {kind!r}")
        return self._parse(_listing(_module(version), kind))


#: names in the signatures that nothing here documents: left as text, because resolving them
#: makes Sphinx scan every object for each of thousands of references
UNDOCUMENTED = frozenset({"str", "int", "float", "bool", "None", "Any", "tuple", "dict"})


def _unlink_builtins(app: Any, doctree: nodes.document) -> None:
    for ref in list(doctree.findall(addnodes.pending_xref)):
        if ref.get("refdomain") == "py" and ref.get("reftarget") in UNDOCUMENTED | {
            "datetime.datetime"
        }:
            ref.replace_self(ref.children)


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("ocpp-actions", OcppActions)
    app.add_directive("ocpp-classes", OcppClasses)
    app.connect("doctree-read", _unlink_builtins)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
