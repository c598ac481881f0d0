"""The app's log as Splunk indexes and searches it, from the app's own props.conf (no Splunk here).

- ``events(log, stanza)``: the log cut into events at LINE_BREAKER's first capture group, as Splunk does.
- ``fields(event, stanza)``: search-time fields: every ``EXTRACT-`` pattern of the stanza run on the event
  (named groups become fields; a pattern that does not match adds nothing) and, only with
  ``KV_MODE = auto``, key=value pairs anywhere in it, as Splunk's automatic extraction would.
"""

import re
from typing import Dict, List


def pcre_to_python(pattern: str) -> str:
    return re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", pattern)


def events(log: str, stanza: Dict[str, str]) -> List[str]:
    breaker = re.compile(pcre_to_python(stanza["LINE_BREAKER"]))
    out, start = [], 0
    for match in breaker.finditer(log):
        out.append(log[start:match.start(1)])
        start = match.end(1)
    out.append(log[start:])
    return [event for event in out if event.strip()]


def fields(event: str, stanza: Dict[str, str]) -> Dict[str, str]:
    found: Dict[str, str] = {}
    if stanza.get("KV_MODE", "auto").strip().lower() == "auto":
        found.update(re.findall(r"([A-Za-z_]\w*)=\"?([^\s\"]*)", event))
    for key in sorted(k for k in stanza if k.startswith("EXTRACT-")):
        match = re.search(pcre_to_python(stanza[key]), event)
        if match:
            found.update({name: value for name, value in match.groupdict().items() if value is not None})
    return found
