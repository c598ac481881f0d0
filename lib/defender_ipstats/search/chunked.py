"""The lean path of protocol v2 for this command: a chunk's CSV body in, the reply chunk out.

splunklib reads a chunk into one dict per event (``_read_csv_records``) and writes every event back
field by field (``RecordWriter._write_record``) into a text buffer. For a command that adds seven
fields to 50,000 events that is most of its time and memory. This module does the same job on the
CSV text:

- the body is split into records (its lines, joined again where a quoted value holds a newline)
  and parsed with the ``csv`` module to read the IP field, which also checks the split;
- every record goes out as it came in, with the output columns appended; their text is made once
  per distinct field value of the chunk;
- a record with a multivalue cell (a non-empty ``__mv_<field>``) is written again from its cells,
  the way splunklib writes it (two or more values: the values joined by newlines and the ``$a$;$b$``
  cell; one value: a plain cell; none: empty cells);
- the reply goes out as one chunk, its metadata encoded as splunklib encodes it.

What comes out decodes to exactly what splunklib's path gives: the same records in the same order,
the same fields with the same values, multivalues included. Only the layout differs: the event's
own columns first, as they came, then each output field with its ``__mv_`` companion; lines end
with ``\n``, as splunkd's own do. A body this path does not handle (duplicate or orphan column
names, output fields already in the events, rows longer or shorter than the header, CSV it cannot
split safely) raises :class:`Unsupported` before any lookup, and the command gives that chunk to
splunklib's path.

Reading the requests, options and getinfo stay with splunklib; this module imports none of it.
"""

import csv
import io
import json
import re
from itertools import chain, repeat
from operator import add, itemgetter
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence

MV_PREFIX = "__mv_"
# Rows parsed at a time: only the field's cells are kept, so memory stays flat with the chunk size.
PARSE_SLICE = 5000
# Characters that make the csv module quote a cell (QUOTE_MINIMAL, "\r\n" line ends).
_NEEDS_QUOTES = re.compile('[,"\r\n]')


class Unsupported(Exception):
    """This body is for splunklib's path; the message says why."""


class Body(NamedTuple):
    """A reply body: its size in bytes, and its bytes in pieces (made as they are written)."""

    size: int
    pieces: Iterable[bytes]


def mv_encode(values: Sequence[str]) -> str:
    """``["a", "b$"]`` -> ``$a$;$b$$$``: a multivalue cell as splunklib writes it."""
    return "$" + "$;$".join([value.replace("$", "$$") for value in values]) + "$"


class _CsvLine:
    """One row as CSV text, as splunklib's writer quotes it (csv, QUOTE_MINIMAL), without line end."""

    def __init__(self):
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def __call__(self, cells) -> str:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._writer.writerow(cells)
        return buffer.getvalue()[:-2]


class LeanBody:
    """Enriches the CSV body of execute chunks for one search: ``field`` in, ``names`` out.

    ``decode_mv(cell) -> list of str`` reads a ``__mv_`` cell; the command passes splunklib's own
    reader of those cells, so that both paths see the same values even in a malformed cell.
    """

    def __init__(self, field: str, names: Sequence[str], decode_mv: Callable[[str], List[str]]):
        self.field = field
        self.names = tuple(names)
        self.decode_mv = decode_mv
        self._line = _CsvLine()
        self._own_columns = frozenset(self.names) | frozenset(MV_PREFIX + name for name in self.names)
        self._header_tail = "," + self._line([cell for name in self.names for cell in (name, MV_PREFIX + name)])
        self._empty_tail = "," * (2 * len(self.names))
        self._empty_outputs = [("", "")] * len(self.names)

    # -- the chunk ------------------------------------------------------------------------
    def process(self, text: str, enrich: Callable[[list], Optional[Dict[str, tuple]]]) -> "Body":
        """The reply body for the request body ``text``.

        ``enrich(values) -> row_of`` is called exactly once, with the field's value of every event
        (a string, a list of strings for a multivalue, or None when the events lack the field);
        ``row_of`` maps each non-empty value (and multivalue item) to its output values, or is None
        when enrichment failed (then the output fields are empty). Raises :class:`Unsupported`
        before calling ``enrich`` if splunklib's path must take the chunk.
        """
        try:
            header_line, header, rows, values, special, lookup_values = self._read(text)
        except (Unsupported, MemoryError):
            raise
        except Exception as error:  # a shape this path did not foresee: splunklib's path copes
            raise Unsupported("unexpected %s: %s" % (type(error).__name__, error)) from error
        row_of = enrich(lookup_values)  # the one call; nothing below raises Unsupported
        if header is None or not rows:  # no events (or the header alone, as in splunkd's last chunk):
            return Body(0, ())  # splunklib writes no body either
        tails, ascii_tails = self._tails(values, special, row_of)
        del values
        mv_columns = [(index, header.index(name[len(MV_PREFIX):])) for index, name in enumerate(header)
                      if name.startswith(MV_PREFIX)]
        rewritten = {index: self._rewrite(cells, mv_columns, lookup_values[index], row_of)
                     for index, cells in special.items()}
        head = (header_line + self._header_tail + "\n").encode("utf-8")
        pieces = self._pieces(rows, tails, rewritten)
        if ascii_tails and text.isascii():
            # One character is one byte: the size is known without the body, which is then made
            # and written a slice at a time.
            size = len(head) + sum(map(len, rows)) + sum(map(len, tails)) + len(rows)
            for index, line in rewritten.items():
                size += len(line) - len(rows[index]) - len(tails[index])
            return Body(size, chain((head,), pieces))
        pieces = [head] + list(pieces)
        return Body(sum(map(len, pieces)), pieces)

    @staticmethod
    def _pieces(rows, tails, rewritten):
        """The body's lines as UTF-8, a slice of rows at a time."""
        for start in range(0, len(rows), PARSE_SLICE):
            lines = list(map(add, rows[start:start + PARSE_SLICE], tails[start:start + PARSE_SLICE]))
            if rewritten:
                for index in range(start, start + len(lines)):
                    line = rewritten.get(index)
                    if line is not None:
                        lines[index - start] = line
            yield ("\n".join(lines) + "\n").encode("utf-8")

    # -- reading --------------------------------------------------------------------------
    def _read(self, text):
        """(header line, header, rows, field values, rows with multivalue cells, values to look up);
        the header is None when the body has no events."""
        records = self._records(text) if text else []
        if not records:
            return None, None, [], [], {}, []
        header_line = records[0]
        header = self._parse_header(header_line)
        rows = records[1:]
        del records
        if not header:
            if rows:
                raise Unsupported("events without a header")
            return None, None, [], [], {}, []
        values, special = self._read_rows(rows, header)
        lookup_values = values
        if special:
            lookup_values = list(values)
            field_mv = header.index(MV_PREFIX + self.field) if MV_PREFIX + self.field in header else None
            for index, cells in special.items():
                if field_mv is not None and cells[field_mv]:
                    lookup_values[index] = self.decode_mv(cells[field_mv])
        return header_line, header, rows, values, special, lookup_values

    @staticmethod
    def _records(text: str) -> List[str]:
        """The body's CSV records, without their line ends."""
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        if '"' in text:
            counts = list(map(str.count, lines, repeat('"')))
            if any(map((1).__and__, counts)):  # a quoted value spans lines: join them again
                joined, pending = [], None
                for line, count in zip(lines, counts):
                    if pending is None:
                        if count & 1:
                            pending = [line]
                        else:
                            joined.append(line)
                    else:
                        pending.append(line)
                        if count & 1:
                            joined.append("\n".join(pending))
                            pending = None
                if pending is not None:
                    raise Unsupported("a quoted value is not closed")
                lines = joined
        if "\r" in text:  # "\r\n" line ends (a "\r" inside a quoted value stays)
            lines = [line[:-1] if line[-1:] == "\r" else line for line in lines]
            if any(line[-1:] == "\r" for line in lines):
                raise Unsupported("stray carriage return")
        return lines

    def _parse_header(self, line: str) -> List[str]:
        try:
            header = next(csv.reader([line]), [])
        except csv.Error as error:
            raise Unsupported("header: %s" % error)
        names = set(header)
        if len(names) != len(header):
            raise Unsupported("duplicate column names")
        for name in header:
            if name.startswith(MV_PREFIX):
                plain = name[len(MV_PREFIX):]
                if plain not in names or plain.startswith(MV_PREFIX):
                    raise Unsupported("%s without its field" % name)
        if names & self._own_columns:
            raise Unsupported("the events already have output fields")
        return header

    def _read_rows(self, rows: List[str], header: List[str]):
        """The field's plain cell of every row, and the rows with a multivalue cell (index -> cells)."""
        width = len(header)
        field = self.field
        get_value = None
        if field in header and not field.startswith(MV_PREFIX):
            get_value = itemgetter(header.index(field))
        mv_indexes = [index for index, name in enumerate(header) if name.startswith(MV_PREFIX)]
        get_mv = None
        if mv_indexes:  # (an itemgetter of one index gives the cell, not a tuple: ask for it twice)
            get_mv = itemgetter(*mv_indexes) if len(mv_indexes) > 1 else itemgetter(mv_indexes[0], mv_indexes[0])
        # splunkd puts every __mv_ column after the plain ones: then a record that ends with as many
        # commas as there are __mv_ columns has them all empty, which is cheaper to see on its text.
        empty_mv_suffix = "," * len(mv_indexes) if mv_indexes == list(range(width - len(mv_indexes), width)) else None
        values: list = []
        distinct = {}.setdefault
        special: Dict[int, List[str]] = {}
        for start in range(0, len(rows), PARSE_SLICE):
            part = rows[start:start + PARSE_SLICE]
            try:
                parsed = list(csv.reader(part))
            except csv.Error as error:
                raise Unsupported("CSV: %s" % error)
            if len(parsed) != len(part):
                raise Unsupported("records and CSV rows differ")
            lengths = set(map(len, parsed))
            if lengths != {width}:
                raise Unsupported("rows of %s cells for %d columns" % (sorted(lengths), width))
            if get_value is not None:  # one string object per distinct value, not one per row
                cells = list(map(get_value, parsed))
                values.extend(map(distinct, cells, cells))
            if get_mv is not None:
                if empty_mv_suffix is not None and all(map(str.endswith, part, repeat(empty_mv_suffix))):
                    continue
                flags = list(map(any, map(get_mv, parsed)))
                if True in flags:
                    for offset, flag in enumerate(flags):
                        if flag:
                            special[start + offset] = parsed[offset]
        if get_value is None:
            values = [None] * len(rows)
        return values, special

    # -- writing --------------------------------------------------------------------------
    def _tails(self, values, special, row_of):
        """The text appended to each row (the output columns for its value), and whether all is ASCII."""
        empty = self._empty_tail
        if row_of is None:
            return [empty] * len(values), True
        tail_of = {None: empty, "": empty}
        line = self._line
        for raw, outputs in row_of.items():
            if raw:
                if _NEEDS_QUOTES.search("".join(outputs)):
                    tail_of[raw] = "," + line([cell for value in outputs for cell in (value, "")])
                else:
                    tail_of[raw] = "," + ",,".join(outputs) + ","
        if special:  # those rows are written again from their cells
            values = list(values)
            for index in special:
                values[index] = None
        return list(map(tail_of.__getitem__, values)), all(tail.isascii() for tail in tail_of.values())

    def _outputs(self, value, row_of):
        """``(plain cell, __mv_ cell)`` of each output field, as splunklib writes them."""
        if row_of is None or not value:
            return self._empty_outputs
        if type(value) is list:
            columns = [row_of[item] for item in value]
            outputs = []
            for index in range(len(self.names)):
                cells = [column[index] for column in columns]
                outputs.append(("\n".join(cells), mv_encode(cells)) if len(cells) > 1 else (cells[0], ""))
            return outputs
        return [(cell, "") for cell in row_of[value]]

    def _rewrite(self, cells, mv_columns, value, row_of) -> str:
        """A row with multivalue cells, as splunklib would write it, with the output columns."""
        cells = list(cells)
        for mv_index, plain_index in mv_columns:
            if cells[mv_index]:
                items = self.decode_mv(cells[mv_index])
                if len(items) > 1:
                    cells[plain_index], cells[mv_index] = "\n".join(items), mv_encode(items)
                else:
                    cells[plain_index], cells[mv_index] = (items[0] if items else ""), ""
        for plain, multi in self._outputs(value, row_of):
            cells.append(plain)
            cells.append(multi)
        return self._line(cells)


def write_reply(ostream, body: Body, finished=None, inspector: Optional[dict] = None) -> None:
    """One reply chunk: ``{"inspector": ..., "finished": ...}`` and the body, as splunklib frames it.

    Members that are None are left out (an empty inspector is None); the JSON is compact and ASCII,
    like splunklib's; the lengths are byte counts.
    """
    metadata = {}
    if inspector:
        metadata["inspector"] = inspector
    if finished is not None:
        metadata["finished"] = finished
    meta = json.dumps(metadata, separators=(",", ":")).encode("utf-8")
    ostream.write(b"chunked 1.0,%d,%d\n%s" % (len(meta), body.size, meta))
    written = 0
    for piece in body.pieces:
        ostream.write(piece)
        written += len(piece)
    if written != body.size:  # never: the search would read a broken stream
        raise RuntimeError("reply body is %d bytes, announced %d" % (written, body.size))
    ostream.flush()
