"""Sphinx configuration of the ocpp-trio documentation.

Build it as CI does (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST); the API reference is generated from the docstrings (Google style,
read by napoleon).  The generated message modules are listed by the ``ocpp-actions`` and
``ocpp-classes`` directives of ``_ext/ocpp_reference.py``, read from the modules at build time.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

project = "ocpp-trio"
author = "the ocpp-trio authors"
copyright = "the ocpp-trio authors"  # noqa: A001 - the name Sphinx reads

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "ocpp_reference",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# long signatures (a message class with a dozen fields) one parameter per line; the module is
# named once, in the page's or the section's title
python_maximum_signature_line_length = 100
add_module_names = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = "ocpp-trio"
