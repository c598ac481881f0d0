"""Splunk ``.conf`` and ``.meta`` files: parsing, and values as a conf file holds them."""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional
from urllib.parse import unquote

ConfFile = Dict[str, Dict[str, str]]


def parse_conf_text(text: str) -> ConfFile:
    """Parse Splunk .conf text into ``{stanza: {key: value}}`` (insertion ordered).

    ``[stanza]`` headers, ``key = value`` lines (split on the first ``=``, both
    sides stripped), ``#`` comment lines, a trailing backslash continues the
    value on the next line (the line break is kept in the value).  Settings
    before the first stanza header belong to ``[default]``.  A repeated key
    wins over an earlier one; repeated stanzas merge.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    result: ConfFile = {}
    current = "default"
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
            result.setdefault(current, {})
            continue
        # Line continuation: a trailing backslash joins the next line.
        while line.rstrip().endswith("\\") and i < len(lines):
            line = line.rstrip()[:-1] + "\n" + lines[i]
            i += 1
        if line.rstrip().endswith("\\"):
            line = line.rstrip()[:-1]
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if not key:
            continue
        result.setdefault(current, {})[key] = value.strip()
    return result


def parse_conf_file(path: str) -> ConfFile:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return parse_conf_text(handle.read())


def _parse_meta(path: str) -> Dict[str, Dict[str, str]]:
    """Parse a .meta file; stanza names are URL-decoded (``[savedsearches/a%20b]``)."""
    parsed = parse_conf_file(path)
    return {unquote(name): values for name, values in parsed.items()}


def _parse_access(value: Optional[str]) -> Optional[Dict[str, List[str]]]:
    """``read : [ * ], write : [ admin, power ]`` -> {"read": ["*"], "write": [...]}"""
    if value is None:
        return None
    perms: Dict[str, List[str]] = {}
    for match in re.finditer(r"(\w+)\s*:\s*\[([^\]]*)\]", value):
        perms[match.group(1)] = [r.strip() for r in match.group(2).split(",") if r.strip()]
    perms.setdefault("read", [])
    perms.setdefault("write", [])
    return perms


def _conf_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
