"""Sphinx configuration of the ocpp-trio documentation.

Build it as CI does (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST); the API reference is generated from the docstrings (Google style,
read by napoleon).  The generated message modules are summarised by the ``ocpp-actions``
directive below (one table of actions per version) instead of documenting their thousands of
classes one by one, which keeps the build fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

project = "ocpp-trio"
author = "the ocpp-trio authors"
copyright = "the ocpp-trio authors"  # noqa: A001 - the name Sphinx reads

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = "ocpp-trio"


class OcppActions(Directive):
    """``.. ocpp-actions:: 2.0.1``: a table of the version's actions, who sends them, and the
    request/response class names."""

    required_arguments = 1

    def run(self) -> list[Any]:
        from ocpp_trio.messages import actions

        version = self.arguments[0]
        table = nodes.table()
        group = nodes.tgroup(cols=3)
        table += group
        for width in (30, 20, 50):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += _row(["action", "sent by", "classes"])
        body = nodes.tbody()
        group += body
        for name, spec in sorted(actions(version).items()):
            sender = {
                "station->csms": "station",
                "csms->station": "CSMS",
                "both": "either",
            }[spec.direction.value]
            classes = spec.request.__name__
            if spec.response is not None:
                classes += f" / {spec.response.__name__}"
            else:
                classes += " (SEND, never answered)"
            body += _row([name, sender, classes])
        return [table]


def _row(cells: list[str]) -> Any:
    row = nodes.row()
    for text in cells:
        entry = nodes.entry()
        entry += nodes.paragraph(text=text)
        row += entry
    return row


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("ocpp-actions", OcppActions)
    return {"parallel_read_safe": True}
