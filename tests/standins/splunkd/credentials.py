"""``storage/passwords`` entity names (``<realm>:<user>:`` with ``:`` escaped)."""

from __future__ import annotations

from typing import List, Optional, Tuple


def _escape_cred(part: str) -> str:
    return part.replace("\\", "\\\\").replace(":", "\\:")


def _cred_name(realm: str, username: str) -> str:
    return _escape_cred(realm) + ":" + _escape_cred(username) + ":"


def _split_cred_name(name: str) -> Optional[Tuple[str, str]]:
    parts: List[str] = []
    current: List[str] = []
    i = 0
    trailing_colon = False
    while i < len(name):
        char = name[i]
        if char == "\\" and i + 1 < len(name):
            current.append(name[i + 1])
            i += 2
            continue
        if char == ":":
            parts.append("".join(current))
            current = []
            i += 1
            trailing_colon = i == len(name)
            continue
        current.append(char)
        i += 1
    if not trailing_colon:
        parts.append("".join(current))
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return None
