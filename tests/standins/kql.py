"""A small KQL interpreter for the Graph stand-in: the operators and functions the app's hunting
query uses, with Kusto's documented semantics, so that a different but equivalent query gets the
same answer and a wrong one a wrong answer.

Supported: ``let Name = <tabular>;`` statements, then a tabular expression: a table or ``let`` name,
``materialize(...)``, ``(...)`` or ``union (...), (...)`` (kind outer: every column of every leg, in the
order they first appear, empty where a leg lacks one), then ``| where``, ``| extend``, ``| project``,
``| summarize ... by ...``, ``| take``/``limit``, ``| top N by <expr> [desc|asc]`` (desc by default,
empty values last); expressions with ``and``/``or``, ``==``/``!=``/``<``/``<=``/``>``/``>=``,
``=~``/``!~`` (case-insensitive equality), ``in``/``!in`` (case-sensitive), ``in~``/``!in~``
(case-insensitive), ``startswith``/``!startswith`` (case-insensitive, as in Kusto),
``startswith_cs``, ``has``, ``contains``, ``+``/``-`` on datetimes and timespans; functions ``ago``,
``now``, ``iff``/``iif``, ``substring``, ``tolower``, ``toupper``, ``strlen``, ``isempty``,
``isnotempty``, ``not``, ``tostring``, ``bin`` (rounds down to a multiple: ``bin(Timestamp, 1d)`` is the
UTC day); aggregates ``count()``, ``countif()``, ``dcount()``, ``sum()``, ``min()``, ``max()`` and
``arg_max(<expr>, <column>, ...)`` (unnamed: the row with the largest value gives the columns, named
as the arguments).
Anything else raises ``KqlError`` (Graph answers 400). ``dcount`` is exact here (Kusto's is an
estimate for large sets). Datetimes are .NET ticks (100 ns) since the Unix epoch.
"""

import re
from typing import Any, Callable, Dict, List, Optional, Tuple

TICKS_PER_SECOND = 10 ** 7
_UNITS = {"d": 86400 * TICKS_PER_SECOND, "h": 3600 * TICKS_PER_SECOND, "m": 60 * TICKS_PER_SECOND,
          "s": TICKS_PER_SECOND, "ms": TICKS_PER_SECOND // 1000}


class KqlError(ValueError):
    """The query cannot be parsed or names something unknown; ``str()`` is Graph-like."""


class DateTime:
    __slots__ = ("ticks",)

    def __init__(self, ticks: int):
        self.ticks = ticks

    def __eq__(self, other):
        return isinstance(other, DateTime) and other.ticks == self.ticks

    def __lt__(self, other):
        return self.ticks < _ticks_of(other, DateTime)

    def __hash__(self):
        return hash(("dt", self.ticks))


class Timespan(DateTime):
    __slots__ = ()

    def __eq__(self, other):
        return isinstance(other, Timespan) and other.ticks == self.ticks

    def __hash__(self):
        return hash(("ts", self.ticks))


def _ticks_of(value, kind):
    if not isinstance(value, kind) or (kind is DateTime and isinstance(value, Timespan)):
        raise KqlError("Semantic error: cannot compare values of different types.")
    return value.ticks


_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<timespan>\d+(?:ms|d|h|m|s)\b)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<op>!in~|!in\b|in~|!startswith\b|==|!=|<=|>=|=~|!~|[|(),=<>+\-*/;])
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
""", re.VERBOSE)


def tokenize(text: str) -> List[Tuple[str, Any]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise KqlError("Query could not be parsed at '%s' on line [1,%d]"
                           % (text[position:position + 10], position))
        kind = match.lastgroup
        value = match.group(kind)
        position = match.end()
        if kind == "space":
            continue
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "timespan":
            number, unit = re.match(r"(\d+)(\D+)", value).groups()
            value = Timespan(int(number) * _UNITS[unit])
        elif kind == "number":
            value = float(value) if "." in value else int(value)
        tokens.append((kind, value))
    tokens.append(("end", None))
    return tokens


# -- syntax tree: tuples ("col", name) ("lit", value) ("call", name, args) ("bin", op, left, right)
#    ("in", op, left, [items]) -------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, offset=0):
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self):
        token = self.tokens[self.i]
        self.i += 1
        return token

    def accept(self, kind, value=None):
        token = self.peek()
        if token[0] == kind and (value is None or token[1] == value):
            self.i += 1
            return True
        return False

    def expect(self, kind, value=None):
        if not self.accept(kind, value):
            raise KqlError("Query could not be parsed: expected %s, found %r" % (value or kind, self.peek()[1]))
        return self.tokens[self.i - 1][1]

    def program(self):
        lets = []
        while self.accept("name", "let"):
            name = self.expect("name")
            self.expect("op", "=")
            lets.append((name, self.tabular()))
            self.expect("op", ";")
        body = self.tabular()
        self.accept("op", ";")
        if self.peek()[0] != "end":
            raise KqlError("Query could not be parsed at %r" % (self.peek()[1],))
        return lets, body

    def tabular(self):
        source = self.source()
        operators = []
        while self.accept("op", "|"):
            operators.append(self.operator())
        return ("tabular", source, operators)

    def source(self):
        if self.accept("name", "union"):
            legs = [self.leg()]
            while self.accept("op", ","):
                legs.append(self.leg())
            return ("union", legs)
        if self.peek() == ("name", "materialize") and self.peek(1) == ("op", "("):
            self.take()
            return ("sub", self.leg())
        if self.peek() == ("op", "("):
            return ("sub", self.leg())
        return ("table", self.expect("name"))

    def leg(self):
        if self.accept("op", "("):
            inner = self.tabular()
            self.expect("op", ")")
            return inner
        return ("tabular", ("table", self.expect("name")), [])

    def operator(self):
        name = self.expect("name")
        if name == "where":
            return ("where", self.expr())
        if name in ("extend", "project"):
            return (name, self.assignments(allow_bare=name == "project"))
        if name in ("take", "limit"):
            count = self.expect("number")
            return ("take", int(count))
        if name == "top":
            count = self.expect("number")
            self.expect("name", "by")
            expr = self.expr()
            descending = not self.accept("name", "asc")
            if descending:
                self.accept("name", "desc")
            return ("top", int(count), expr, descending)
        if name == "summarize":
            aggregates = []
            if not (self.peek() == ("name", "by")):
                aggregates = self.assignments(allow_bare=True)
            keys = self.assignments(allow_bare=True) if self.accept("name", "by") else []
            return ("summarize", aggregates, keys)
        raise KqlError("Query could not be parsed: unknown operator '%s'" % name)

    def assignments(self, allow_bare):
        out = []
        while True:
            if self.peek()[0] == "name" and self.peek(1) == ("op", "="):
                name = self.take()[1]
                self.take()
                out.append((name, self.expr()))
            else:
                expr = self.expr()
                if not allow_bare:
                    raise KqlError("Query could not be parsed: expected Name = expression")
                out.append((_default_name(expr), expr))
            if not self.accept("op", ","):
                return out

    def expr(self):
        left = self.conjunction()
        while self.accept("name", "or"):
            left = ("bin", "or", left, self.conjunction())
        return left

    def conjunction(self):
        left = self.comparison()
        while self.accept("name", "and"):
            left = ("bin", "and", left, self.comparison())
        return left

    def comparison(self):
        left = self.additive()
        kind, value = self.peek()
        if kind == "op" and value in ("in~", "!in~", "!in") or (kind, value) == ("name", "in"):
            self.take()
            self.expect("op", "(")
            items = [self.expr()]
            while self.accept("op", ","):
                items.append(self.expr())
            self.expect("op", ")")
            return ("in", value, left, items)
        if kind == "op" and value in ("==", "!=", "<", "<=", ">", ">=", "=~", "!~", "!startswith") or \
                (kind == "name" and value in ("startswith", "startswith_cs", "has", "contains")):
            self.take()
            return ("bin", value, left, self.additive())
        return left

    def additive(self):
        left = self.primary()
        while self.peek()[0] == "op" and self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            left = ("bin", op, left, self.primary())
        return left

    def primary(self):
        kind, value = self.take()
        if kind in ("string", "number", "timespan"):
            return ("lit", value)
        if kind == "op" and value == "(":
            inner = self.expr()
            self.expect("op", ")")
            return inner
        if kind == "name":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if self.accept("op", "("):
                args = []
                if not self.accept("op", ")"):
                    args.append(self.expr())
                    while self.accept("op", ","):
                        args.append(self.expr())
                    self.expect("op", ")")
                return ("call", value, args)
            return ("col", value)
        raise KqlError("Query could not be parsed at %r" % (value,))


def _default_name(expr):
    if expr[0] == "col":
        return expr[1]
    if expr[0] == "call" and expr[1] in _AGGREGATES:
        args = expr[2]
        return "%s_%s" % (expr[1], args[0][1]) if args and args[0][0] == "col" else expr[1] + "_"
    return "Column1"


def parse(text: str):
    """(lets, body): the ``let`` statements, each (name, tabular), and the tabular expression."""
    return _Parser(text).program()


# -- evaluation ------------------------------------------------------------------------------------

def _string(value, what):
    if not isinstance(value, str):
        raise KqlError("Semantic error: %s expects a string." % what)
    return value


def _compare(op, left, right):
    if left is None or right is None:
        return False if op not in ("!=", "!~") else True
    if op in ("=~", "!~"):
        equal = _string(left, op).lower() == _string(right, op).lower()
        return equal if op == "=~" else not equal
    if op == "startswith":
        return _string(left, op).lower().startswith(_string(right, op).lower())
    if op == "!startswith":
        return not _string(left, op).lower().startswith(_string(right, op).lower())
    if op == "startswith_cs":
        return _string(left, op).startswith(_string(right, op))
    if op == "has":  # whole terms; enough for the stand-in: case-insensitive term match
        terms = re.split(r"[^0-9A-Za-z]+", _string(left, op).lower())
        return _string(right, op).lower() in terms
    if op == "contains":
        return _string(right, op).lower() in _string(left, op).lower()
    if isinstance(left, DateTime) or isinstance(right, DateTime):
        kind = Timespan if isinstance(left, Timespan) else DateTime
        left, right = _ticks_of(left, kind), _ticks_of(right, kind)
    elif isinstance(left, str) != isinstance(right, str):
        raise KqlError("Semantic error: cannot compare a string with a number.")
    return {"==": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
            ">": left > right, ">=": left >= right}[op]


class Evaluator:
    def __init__(self, now_ticks: int, columns: Dict[str, str]):
        self.now = now_ticks
        self.columns = dict(columns)  # name -> Kusto type, for resolving names and the result schema
        self._constant_sets: Dict[int, Any] = {}

    def value(self, expr, row):
        kind = expr[0]
        if kind == "lit":
            return expr[1]
        if kind == "col":
            if expr[1] not in row:
                raise KqlError("Semantic error: Failed to resolve scalar expression named '%s'" % expr[1])
            return row[expr[1]]
        if kind == "in":
            left = self.value(expr[2], row)
            folded = expr[1] in ("in~", "!in~")
            members = self._constant_sets.get(id(expr))
            if members is None:
                items = [self.value(item, row) for item in expr[3]]
                members = {_string(i, "in~").lower() for i in items} if folded else items
                if all(item[0] == "lit" for item in expr[3]):  # the same for every row
                    members = set(members) if folded or all(isinstance(i, str) for i in items) else members
                    self._constant_sets[id(expr)] = members
            found = (isinstance(left, str) and left.lower() in members) if folded else left in members
            return found if expr[1] in ("in", "in~") else not found
        if kind == "bin":
            op = expr[1]
            if op == "and":
                return bool(self.value(expr[2], row)) and bool(self.value(expr[3], row))
            if op == "or":
                return bool(self.value(expr[2], row)) or bool(self.value(expr[3], row))
            left, right = self.value(expr[2], row), self.value(expr[3], row)
            if op in ("+", "-"):
                return _arithmetic(op, left, right)
            return _compare(op, left, right)
        if kind == "call":
            return self.call(expr[1], expr[2], row)
        raise KqlError("Query could not be parsed.")

    def call(self, name, args, row):
        if name in _AGGREGATES:
            raise KqlError("Semantic error: The aggregate function '%s' is not allowed in this context." % name)
        values = [self.value(a, row) for a in args]
        if name == "ago" and len(values) == 1 and isinstance(values[0], Timespan):
            return DateTime(self.now - values[0].ticks)
        if name == "now" and not values:
            return DateTime(self.now)
        if name in ("iff", "iif") and len(values) == 3:
            return values[1] if values[0] is True else values[2]
        if name == "substring" and len(values) in (2, 3):
            text = _string(values[0], name)
            start = max(0, int(values[1]))
            return text[start:] if len(values) == 2 else text[start:start + max(0, int(values[2]))]
        if name in ("tolower", "toupper", "strlen", "isempty", "isnotempty", "tostring") and len(values) == 1:
            v = values[0]
            if name == "isempty":
                return v is None or v == ""
            if name == "isnotempty":
                return not (v is None or v == "")
            if name == "tostring":
                return "" if v is None else format_value(v)
            text = _string(v, name)
            return {"tolower": text.lower, "toupper": text.upper, "strlen": lambda: len(text)}[name]()
        if name == "not" and len(values) == 1:
            return not values[0]
        if name == "bin" and len(values) == 2:
            return _bin(values[0], values[1])
        raise KqlError("Semantic error: '%s' with %d arguments is not a known function." % (name, len(values)))

    def tabular(self, node, lets, table, rows_for, not_before):
        """The rows and columns of a tabular expression (``lets``: the names defined so far)."""
        _, source, operators = node
        if source[0] == "table":
            name = source[1]
            if name in lets:
                rows, columns = lets[name]
            elif name == table:
                literals = _indexed_literals(operators)
                if literals is None:
                    raise KqlError("Stand-in limitation: the query must restrict RemoteIP to string literals "
                                   "(in, in~, == or =~) in a leading where.")
                rows = rows_for(literals)
                if not_before is not None:
                    rows = [row for row in rows if row["Timestamp"].ticks > not_before]
                columns = dict(self.columns)
            else:
                raise KqlError("Semantic error: Failed to resolve table expression named '%s'" % name)
        elif source[0] == "sub":
            rows, columns = self.tabular(source[1], lets, table, rows_for, not_before)
        else:  # union, kind outer
            legs = [self.tabular(leg, lets, table, rows_for, not_before) for leg in source[1]]
            columns = {}
            for _, leg_columns in legs:
                for name, kind in leg_columns.items():
                    columns.setdefault(name, kind)
            rows = [{name: row.get(name) for name in columns} for leg_rows, _ in legs for row in leg_rows]
        return self.run(operators, rows, columns)

    def run(self, operators, rows: List[Dict[str, Any]], columns=None):
        columns = dict(self.columns if columns is None else columns)
        for operator in operators:
            kind = operator[0]
            if kind == "where":
                _check_names(operator[1], columns)
                rows = [row for row in rows if self.value(operator[1], row) is True]
            elif kind in ("extend", "project"):
                for _, expr in operator[1]:
                    _check_names(expr, columns)
                new_columns = {name: _type_of(expr, columns) for name, expr in operator[1]}
                if kind == "extend":
                    rows = [dict(row, **{n: self.value(e, row) for n, e in operator[1]}) for row in rows]
                    columns = dict(columns, **new_columns)
                else:
                    rows = [{n: self.value(e, row) for n, e in operator[1]} for row in rows]
                    columns = new_columns
            elif kind == "take":
                rows = rows[:operator[1]]
            elif kind == "top":
                _check_names(operator[2], columns)
                rows = _top(rows, operator[1], [self.value(operator[2], row) for row in rows], operator[3])
            elif kind == "summarize":
                rows, columns = self.summarize(operator[1], operator[2], rows, columns)
        return rows, columns

    def summarize(self, aggregates, keys, rows, columns):
        for _, expr in keys:
            _check_names(expr, columns)
        for name, expr in aggregates:
            if expr[0] != "call" or expr[1] not in _AGGREGATES:
                raise KqlError("Semantic error: summarize expects aggregate functions, not '%s'." % name)
            if expr[1] == "arg_max" and (name != _default_name(expr) or len(expr[2]) < 2
                                         or any(arg[0] != "col" for arg in expr[2])):
                raise KqlError("Stand-in limitation: arg_max(<column>, <column>, ...) unnamed only.")
            for arg in expr[2]:
                _check_names(arg, columns)
        groups: Dict[tuple, List[Dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(self.value(e, row) for _, e in keys), []).append(row)
        if not keys and not groups:  # summarize without by: one row, also over no rows (count() is 0)
            groups[()] = []
        out = []
        for key, members in groups.items():
            result = {name: value for (name, _), value in zip(keys, key)}
            for name, (_, function, args) in aggregates:
                if function == "arg_max":
                    result.update(_arg_max(self, args, members))
                else:
                    result[name] = _AGGREGATES[function](self, args, members)
            out.append(result)
        new_columns = {name: _type_of(e, columns) for name, e in keys}
        for name, expr in aggregates:
            if expr[1] == "arg_max":
                new_columns.update({arg[1]: columns[arg[1]] for arg in expr[2]})
            else:
                new_columns[name] = _type_of(expr, columns)
        return out, new_columns


def _arithmetic(op, left, right):
    if isinstance(left, DateTime) and isinstance(right, Timespan):
        ticks = left.ticks + right.ticks if op == "+" else left.ticks - right.ticks
        return (Timespan if isinstance(left, Timespan) else DateTime)(ticks)
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left + right if op == "+" else left - right
    raise KqlError("Semantic error: operator %s does not apply to these types." % op)


def _aggregate_values(evaluator, args, rows, name):
    if len(args) != 1:
        raise KqlError("Semantic error: %s() takes one argument." % name)
    return [v for v in (evaluator.value(args[0], row) for row in rows) if v is not None]


def _bin(value, size):
    if isinstance(value, DateTime) and not isinstance(value, Timespan) and isinstance(size, Timespan) \
            and size.ticks > 0:
        return DateTime(value.ticks // size.ticks * size.ticks)
    if isinstance(value, (int, float)) and isinstance(size, (int, float)) and size > 0:
        return type(value)(value // size * size)
    if value is None:
        return None
    raise KqlError("Semantic error: bin() expects a value and a positive bin size of its kind.")


def _top(rows, count, keys, descending):
    present = [(key, index) for index, key in enumerate(keys) if key is not None]
    present.sort(key=lambda pair: pair[0], reverse=descending)  # stable: ties keep their order
    order = [index for _, index in present] + [index for index, key in enumerate(keys) if key is None]
    return [rows[index] for index in order[:count]]


def _arg_max(evaluator, args, rows):
    """The columns of the row with the largest first argument (rows where it is empty are skipped)."""
    best, best_value = None, None
    for row in rows:
        value = evaluator.value(args[0], row)
        if value is not None and (best_value is None or best_value < value):
            best, best_value = row, value
    return {arg[1]: (best.get(arg[1]) if best is not None else None) for arg in args}


def _countif(evaluator, args, rows):
    if len(args) != 1:
        raise KqlError("Semantic error: countif() takes one argument.")
    return sum(1 for row in rows if evaluator.value(args[0], row) is True)


def _count(evaluator, args, rows):
    if args:
        raise KqlError("Semantic error: count() takes no arguments.")
    return len(rows)


_AGGREGATES: Dict[str, Callable] = {
    "count": _count,
    "dcount": lambda ev, args, rows: len(set(_aggregate_values(ev, args, rows, "dcount"))),
    "min": lambda ev, args, rows: min(_aggregate_values(ev, args, rows, "min"), default=None),
    "max": lambda ev, args, rows: max(_aggregate_values(ev, args, rows, "max"), default=None),
    "countif": _countif,
    "sum": lambda ev, args, rows: sum(_aggregate_values(ev, args, rows, "sum")),
    "arg_max": _arg_max,
}


_SCALARS = {"ago", "now", "iff", "iif", "substring", "tolower", "toupper", "strlen", "isempty", "isnotempty",
            "not", "tostring", "bin"}


def _check_names(expr, columns):
    """Names are resolved before any row is read, as Kusto's semantic pass does (an empty table too)."""
    if expr[0] == "col" and expr[1] not in columns:
        raise KqlError("Semantic error: Failed to resolve scalar expression named '%s'" % expr[1])
    if expr[0] == "call" and expr[1] not in _SCALARS and expr[1] not in _AGGREGATES:
        raise KqlError("Semantic error: Unknown function: '%s'." % expr[1])
    for part in expr[1:]:
        if isinstance(part, tuple):
            _check_names(part, columns)
        elif isinstance(part, list):
            for item in part:
                if isinstance(item, tuple):
                    _check_names(item, columns)


def _type_of(expr, columns):
    kind = expr[0]
    if kind == "col":
        return columns[expr[1]]
    if kind == "lit":
        value = expr[1]
        return "string" if isinstance(value, str) else "timespan" if isinstance(value, Timespan) else \
            "bool" if isinstance(value, bool) else "long"
    if kind == "call":
        name, args = expr[1], expr[2]
        if name in ("count", "countif", "dcount", "strlen"):
            return "long"
        if name in ("min", "max", "sum", "bin") and args:
            return _type_of(args[0], columns)
        if name in ("ago", "now"):
            return "datetime"
        if name in ("iff", "iif") and len(args) == 3:
            return _type_of(args[1], columns)
        if name in ("isempty", "isnotempty", "not"):
            return "bool"
        return "string"
    return "bool" if kind == "in" or expr[1] not in ("+", "-") else _type_of(expr[2], columns)


GRAPH_TYPES = {"string": "String", "long": "Int64", "datetime": "DateTime", "bool": "Boolean",
               "timespan": "TimeSpan", "int": "Int32"}


def format_value(value):
    """A value as Graph's JSON writes it: datetimes in ISO 8601 with 7 fractional digits when they have any."""
    if isinstance(value, Timespan):
        return "%d" % value.ticks
    if isinstance(value, DateTime):
        import datetime as dt

        seconds, fraction = divmod(value.ticks, TICKS_PER_SECOND)
        text = (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
        return text + (".%07d" % fraction if fraction else "") + "Z"
    return value


def run(text: str, rows_for: Callable[[List[str]], List[Dict[str, Any]]], columns: Dict[str, str], table: str,
        now_ticks: int, not_before: Optional[int] = None):
    """Evaluate ``text``; ``rows_for(literals)`` yields the table's rows for the RemoteIP literals the query
    restricts to (the table is unbounded: a query without such a restriction is refused)."""
    lets, body = parse(text)
    evaluator = Evaluator(now_ticks, columns)
    defined: Dict[str, Any] = {}
    for name, node in lets:  # each let is evaluated once, as materialize() would
        defined[name] = evaluator.tabular(node, defined, table, rows_for, not_before)
    result, result_columns = evaluator.tabular(body, defined, table, rows_for, not_before)
    schema = [{"name": n, "type": GRAPH_TYPES.get(t, "Object")} for n, t in result_columns.items()]
    return schema, [{n: format_value(row.get(n)) for n in result_columns} for row in result]


def _indexed_literals(operators) -> Optional[List[str]]:
    for operator in operators:
        if operator[0] != "where":
            return None
        for conjunct in _conjuncts(operator[1]):
            if conjunct[0] == "in" and conjunct[1] in ("in", "in~") and conjunct[2] == ("col", "RemoteIP") \
                    and all(item[0] == "lit" and isinstance(item[1], str) for item in conjunct[3]):
                return [item[1] for item in conjunct[3]]
            if conjunct[0] == "bin" and conjunct[1] in ("==", "=~") and conjunct[2] == ("col", "RemoteIP") \
                    and conjunct[3][0] == "lit" and isinstance(conjunct[3][1], str):
                return [conjunct[3][1]]
    return None


def _conjuncts(expr):
    if expr[0] == "bin" and expr[1] == "and":
        return _conjuncts(expr[2]) + _conjuncts(expr[3])
    return [expr]
