"""Search ids as splunkd forms them: the only form a sid takes on the app's log lines."""

import re

# "1733550000.42", "1733550000.42_<member GUID>", "rt_1733550000.42", "subsearch_...",
# "scheduler__<user>__<app>__RMD5..._at_1733550000_42", "<user>__<user>__<app>__search1_1733550000.3".
SID = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.@-]{0,199}\Z")


def is_sid(text) -> bool:
    return isinstance(text, str) and bool(SID.match(text))
