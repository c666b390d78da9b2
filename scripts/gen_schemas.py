"""Extract facts-only JSON schemas from the official OCA schema files.

The official schema files ship inside the ``ocpp`` distribution (a dev dependency).  This script
reads them and writes ``schemas/v1_6``, ``schemas/v2_0_1`` and ``schemas/v2_1``:

* only the keywords that constrain data are kept (types, required, enums, lengths, bounds, refs,
  formats, defaults); descriptions, ``javaType``, ``comment``, ``title`` and ids are dropped;
* files are renamed to ``<Action>Request.json`` / ``<Action>Response.json`` in every version
  (the 1.6 files are named ``<Action>.json`` / ``<Action>Response.json`` upstream); the 2.1
  SEND-only ``NotifyPeriodicEventStream.json`` keeps its name;
* our errata overrides from ``schemas/overrides.json`` are applied, each with its reason;
* ``schemas/SOURCES.md`` records the upstream version and the sha256 of every input file.

The output is deterministic: running the script twice changes nothing.  ``--check`` exits
non-zero when the committed files differ from a fresh run.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"

#: upstream folder in the ``ocpp`` package -> our folder and version label
VERSIONS: dict[str, tuple[str, str]] = {
    "v16": ("v1_6", "1.6"),
    "v201": ("v2_0_1", "2.0.1"),
    "v21": ("v2_1", "2.1"),
}

#: keywords that carry facts about the data; everything else is prose or tooling metadata
KEEP = {
    "$schema",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "maxLength",
    "minLength",
    "minimum",
    "maximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "items",
    "$ref",
    "definitions",
    "format",
    "default",
}

#: the SEND-only message of 2.1 that has no Request/Response pair
SEND_ONLY = {"NotifyPeriodicEventStream"}

#: actions of the 1.6 security white paper (back-ported schemas shipped by the ocpp package)
SECURITY_EXTENSION_1_6 = {
    "CertificateSigned",
    "DeleteCertificate",
    "ExtendedTriggerMessage",
    "GetInstalledCertificateIds",
    "GetLog",
    "InstallCertificate",
    "LogStatusNotification",
    "SecurityEventNotification",
    "SignCertificate",
    "SignedFirmwareStatusNotification",
    "SignedUpdateFirmware",
}

EXPECTED_ACTIONS = {"1.6": 39, "2.0.1": 64, "2.1": 91}


def upstream_dir() -> Path:
    try:
        import ocpp
    except ImportError:  # pragma: no cover - depends on the environment
        sys.exit("gen_schemas.py needs the 'ocpp' package (pip install -e '.[dev]')")
    return Path(ocpp.__file__).resolve().parent


def strip(node: Any, *, in_properties: bool = False) -> Any:
    """Return a copy of a schema node with only the fact-carrying keywords."""
    if isinstance(node, list):
        return [strip(x) for x in node]
    if not isinstance(node, dict):
        return node
    if in_properties:
        # keys of "properties" / "definitions" are names, not keywords
        return {k: strip(v) for k, v in node.items()}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in KEEP:
            continue
        if key == "additionalProperties" and node.get("type") != "object":
            continue  # meaningless on strings (the 1.6 and 2.x enums carry it)
        if key in ("properties", "definitions"):
            out[key] = strip(value, in_properties=True)
        elif key == "enum":
            out[key] = list(value)
        else:
            out[key] = strip(value)
    return out


def target_name(upstream_version: str, stem: str) -> str:
    if upstream_version == "v16":
        return stem if stem.endswith("Response") else stem + "Request"
    return stem


def resolve_pointer(doc: Any, pointer: str) -> Any:
    node = doc
    for part in pointer.strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def apply_override(doc: dict[str, Any], rule: dict[str, Any]) -> bool:
    """Apply one override rule to one schema document; return whether it matched."""
    base: Any
    if "definition" in rule:
        defs = doc.get("definitions", {})
        if rule["definition"] not in defs:
            return False
        base = defs[rule["definition"]]
    else:
        base = doc
    try:
        target = resolve_pointer(base, rule.get("path", ""))
    except (KeyError, IndexError):
        if "definition" in rule:
            raise
        return False
    if "set" in rule:
        target.update(rule["set"])
    if "append" in rule:
        for item in rule["append"]:
            if item not in target:
                target.append(item)
    return True


def generate() -> dict[Path, str]:
    """Compute every output file; return {path: text}."""
    src = upstream_dir()
    overrides = json.loads((SCHEMAS / "overrides.json").read_text(encoding="utf-8"))
    used = [0] * len(overrides["rules"])
    outputs: dict[Path, str] = {}
    source_lines = [
        "# Sources of the schemas in this folder",
        "",
        "Generated by `scripts/gen_schemas.py`; do not edit. The inputs are the official OCA JSON",
        "schemas as shipped in the `ocpp` Python distribution, version "
        f"{importlib.metadata.version('ocpp')}. The 1.6 security-extension files are back-ports",
        "distributed with that package. Prose (descriptions, comments, titles, javaType) is",
        "stripped; `schemas/overrides.json` lists every change we apply on top, with its reason.",
        "",
    ]
    for upstream, (folder, label) in VERSIONS.items():
        files = sorted((src / upstream / "schemas").glob("*.json"))
        actions: set[str] = set()
        source_lines += [f"## OCPP {label} (`{upstream}/schemas`)", ""]
        source_lines += ["| file | sha256 |", "|---|---|"]
        for path in files:
            raw = path.read_bytes()
            source_lines.append(f"| {path.name} | `{hashlib.sha256(raw).hexdigest()}` |")
            doc = strip(json.loads(raw.decode("utf-8-sig")))
            name = target_name(upstream, path.stem)
            for i, rule in enumerate(overrides["rules"]):
                if rule["version"] != label:
                    continue
                if "file" in rule and rule["file"] != name:
                    continue
                if apply_override(doc, rule):
                    used[i] += 1
            if name in SEND_ONLY:
                actions.add(name)
            else:
                actions.add(name.removesuffix("Request").removesuffix("Response"))
            text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
            outputs[SCHEMAS / folder / f"{name}.json"] = text
        if len(actions) != EXPECTED_ACTIONS[label]:
            sys.exit(f"{label}: expected {EXPECTED_ACTIONS[label]} actions, found {len(actions)}")
        source_lines.append("")
    unused = [r for r, n in zip(overrides["rules"], used, strict=True) if n == 0]
    if unused:
        sys.exit(f"overrides that matched nothing: {unused}")
    outputs[SCHEMAS / "SOURCES.md"] = "\n".join(source_lines).rstrip("\n") + "\n"
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed files differ")
    args = parser.parse_args(argv)
    outputs = generate()
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text("utf-8") != text]
    existing = {p for folder, _ in VERSIONS.values() for p in (SCHEMAS / folder).glob("*.json")}
    extra = sorted(existing - set(outputs))
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)}")
        for p in extra:
            print(f"unexpected: {p.relative_to(ROOT)}")
        return 1 if stale or extra else 0
    for p in extra:
        p.unlink()
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(outputs[p], encoding="utf-8", newline="\n")
    print(f"wrote {len(stale)} file(s), removed {len(extra)}, {len(outputs)} up to date in total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
