"""The results file of an alert action: the triggering search's results, a gzipped CSV.

A multivalue field also has a ``__mv_<field>`` column (``$a$;$b$``, ``$$`` for a ``$``). Cells can be
as large as splunkd makes them (a whole ``_raw``, a ``values()`` of thousands): Python's CSV reader
stops at 131,072 characters unless told otherwise, as splunklib's search commands tell it.
"""

import csv
import gzip
from typing import List, NamedTuple, Tuple

from .cam import Invocation, ResultIds

# The largest field Python's csv module can be told to accept on every platform (a C long on Windows).
FIELD_SIZE_LIMIT = 2 ** 31 - 1


class ResultRow(NamedTuple):
    ids: ResultIds
    values: List[str]       # the values of the IP field, multivalues split
    orig_search_name: str   # the search that made the result, when it says (a notable's search_name)




def mv_values(encoded: str) -> List[str]:
    """Values of a results file's ``__mv_<field>`` cell: ``$a$;$b$``, with ``$$`` for a ``$``."""
    values, current, inside, i = [], "", False, 0
    while i < len(encoded):
        ch = encoded[i]
        if not inside:
            if ch == "$":
                inside, current = True, ""
        elif ch == "$":
            if encoded[i + 1:i + 2] == "$":
                current += "$"
                i += 1
            else:
                values.append(current)
                inside = False
        else:
            current += ch
        i += 1
    return values


def read_results(results_file: str, field: str, invocation: Invocation) -> Tuple[List[ResultRow], List[str]]:
    """(one ResultRow per result, in order; the file's columns). Raises one of READ_ERRORS."""
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    rows = []
    with gzip.open(results_file, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        for number, row in enumerate(reader):
            encoded = row.get("__mv_" + field) or ""
            if encoded:
                values = mv_values(encoded)
            else:
                values = [row[field]] if row.get(field) else []
            rows.append(ResultRow(invocation.ids_of(row, number), values, row.get("search_name") or ""))
    return rows, columns


READ_ERRORS = (OSError, EOFError, csv.Error, UnicodeDecodeError)
