"""A little SPL, for tests that check the searches the app ships without a Splunk.

- ``commands(spl)``: every command of a search, subsearches included, as (name, argument text).
- ``split_args(text)``: a command's arguments as splunkd hands them to a custom command.
- ``substitute_tokens(text, values)``: Simple XML / workflow action ``$token$`` substitution.
- ``expand_macros(spl, macros)``: search macros (`` `name` ``, `` `name(a,b)` ``) from macros.conf.
- ``Pipeline``: runs the handful of commands the app's own searches use (inputlookup, eval, where,
  fields, table, sort, dedup, outputlookup, rest, return, lookup) against a splunkd over REST,
  with eval expressions evaluated as Splunk does (null propagates; where keeps true rows only).
  Anything else raises ``Unsupported``: a test then has to learn the new command first.
"""

import json
import math
import re
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple


class Unsupported(Exception):
    pass


# -- splitting ---------------------------------------------------------------------------
def strip_comments(spl: str) -> str:
    return re.sub(r"```.*?```", " ", spl, flags=re.S)


def _scan(text: str) -> Iterator[Tuple[int, str, int]]:
    """Yields (index, char, depth) for characters outside double quotes; depth counts [ and (."""
    depth = 0
    in_quote = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_quote:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        else:
            if ch in "])":
                depth -= 1
            yield i, ch, depth
            if ch in "[(":
                depth += 1
        i += 1
    if in_quote or depth:
        raise SyntaxError("unbalanced quotes or brackets in: %s" % text)


def split_top(text: str, separator: str) -> List[str]:
    parts, start = [], 0
    for index, ch, depth in _scan(text):
        if ch == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def pipeline(spl: str) -> List[str]:
    """The commands of one search level, as text; a search that starts with terms gets ``search``."""
    segments = [s.strip() for s in split_top(strip_comments(spl).strip(), "|")]
    if segments and segments[0] == "":
        segments = segments[1:]
    elif segments:
        segments[0] = "search " + segments[0]
    if any(not s for s in segments):
        raise SyntaxError("empty command in: %s" % spl)
    return segments


def subsearches(segment: str) -> List[Tuple[int, int]]:
    """(start, end) of each top-level [...] of a command (end exclusive, brackets included)."""
    spans, start = [], None
    for index, ch, depth in _scan(segment):
        if ch == "[" and depth == 0:
            start = index
        elif ch == "]" and depth == 0 and start is not None:
            spans.append((start, index + 1))
            start = None
    return spans


def commands(spl: str) -> List[Tuple[str, str]]:
    out = []
    for segment in pipeline(spl):
        name, _, rest = segment.partition(" ")
        out.append((name.strip(), rest.strip()))
        for start, end in subsearches(segment):
            out.extend(commands(segment[start + 1:end - 1]))
    return out


def split_args(text: str) -> List[str]:
    """Whitespace-separated arguments; a double-quoted part stays in its argument, quotes kept."""
    args, current, in_quote, i = [], "", False, 0
    while i < len(text):
        ch = text[i]
        if in_quote and ch == "\\" and i + 1 < len(text):
            current += text[i:i + 2]
            i += 2
            continue
        if ch == '"':
            in_quote = not in_quote
        if ch.isspace() and not in_quote:
            if current:
                args.append(current)
            current = ""
        else:
            current += ch
        i += 1
    if in_quote:
        raise SyntaxError("unbalanced quotes in: %s" % text)
    if current:
        args.append(current)
    return args


def quote_token(value: str) -> str:
    """Simple XML's ``|s`` filter: the value as an SPL string literal (quotes and backslashes escaped)."""
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def substitute_tokens(text: str, values: Dict[str, str]) -> str:
    """Replaces $name$ (and $name|s$, quoted as Simple XML does) with values[name]; $$ stands for $.
    Unknown: KeyError."""
    def replace(match):
        name = match.group(1)
        if name == "":
            return "$"
        token, _, filters = name.partition("|")
        value = values[token]
        return quote_token(value) if "s" in filters.split("|") else value

    return re.sub(r"\$([^$\s]*)\$", replace, text)


def tokens_in(text: str) -> List[str]:
    """Every $token$ or $token|filter$ of ``text`` ($$ is not a token)."""
    return [name for name in re.findall(r"\$([^$\s]*)\$", text) if name]


def expand_macros(spl: str, macros: Dict[str, Dict[str, str]], depth: int = 0) -> str:
    """Replaces `name` and `name(arg, ...)` with the definition of [name] / [name(n)] in macros.conf,
    $arg$ by the arguments named in ``args``; a macro that is not defined raises KeyError."""
    if depth > 10:
        raise SyntaxError("macros nested too deep in: %s" % spl)

    def replace(match):
        name, arguments = match.group(1), match.group(2)
        values = [a.strip() for a in split_top(arguments, ",")] if arguments is not None else []
        stanza = macros[name if not values else "%s(%d)" % (name, len(values))]
        if stanza.get("iseval", "0") not in ("0", "false"):
            raise Unsupported("eval-based macro %s" % name)
        definition = stanza["definition"]
        names = [a.strip() for a in stanza.get("args", "").split(",") if a.strip()]
        for arg_name, value in zip(names, values):
            definition = definition.replace("$%s$" % arg_name, value)
        return expand_macros(definition, macros, depth + 1)

    return re.sub(r"`([A-Za-z0-9_]+)(?:\(([^`]*)\))?`", replace, strip_comments(spl))


# -- eval expressions -----------------------------------------------------------------------
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<string>"(?:\\.|[^"\\])*")
    | (?P<quoted>'(?:[^'])*')
    | (?P<op>==|!=|<=|>=|<|>|=|\+|-|\*|/|%|\.|\(|\)|,)
    | (?P<name>[A-Za-z_][A-Za-z0-9_.:]*)
    )""", re.X)


def _tokens(text: str) -> List[Tuple[str, Any]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise SyntaxError("cannot read %r in: %s" % (text[pos:pos + 20], text))
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "number":
            out.append(("value", float(value) if "." in value or "e" in value.lower() else int(value)))
        elif kind == "string":
            out.append(("value", json.loads(value)))
        elif kind == "quoted":
            out.append(("field", value[1:-1]))
        elif kind == "name" and value in ("AND", "OR", "NOT", "XOR"):
            out.append(("op", value))
        elif kind == "name" and value in ("true", "false", "null"):
            out.append(("const", value))
        elif kind == "name":
            out.append(("field", value))
        else:
            out.append(("op", value))
    return out


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    if math.isnan(number) or math.isinf(number):
        return None
    return int(number) if number.is_integer() else number


def _truth(value) -> bool:
    return value is True


class Expression:
    """An eval expression: parse once, evaluate per row with ``evaluate(row, now)``."""

    def __init__(self, text: str):
        self.text = text
        self._tokens = _tokens(text)
        self._pos = 0
        self.tree = self._or()
        if self._pos != len(self._tokens):
            raise SyntaxError("unexpected %r in: %s" % (self._tokens[self._pos][1], text))

    # parsing (precedence climbing), tree nodes are tuples
    def _peek(self):
        return self._tokens[self._pos] if self._pos < len(self._tokens) else (None, None)

    def _take(self, value=None):
        token = self._peek()
        if value is not None and token != ("op", value):
            raise SyntaxError("expected %r in: %s" % (value, self.text))
        self._pos += 1
        return token

    def _binary(self, operators, operand):
        left = operand()
        while self._peek()[0] == "op" and self._peek()[1] in operators:
            op = self._take()[1]
            left = ("bin", op, left, operand())
        return left

    def _or(self):
        return self._binary(("OR", "XOR"), self._and)

    def _and(self):
        return self._binary(("AND",), self._not)

    def _not(self):
        if self._peek() == ("op", "NOT"):
            self._take()
            return ("not", self._not())
        return self._compare()

    def _compare(self):
        return self._binary(("=", "==", "!=", "<", ">", "<=", ">="), self._additive)

    def _additive(self):
        return self._binary(("+", "-", "."), self._multiplicative)

    def _multiplicative(self):
        return self._binary(("*", "/", "%"), self._unary)

    def _unary(self):
        if self._peek() == ("op", "-"):
            self._take()
            return ("neg", self._unary())
        return self._primary()

    def _primary(self):
        kind, value = self._take()
        if kind == "value":
            return ("value", value)
        if kind == "const":
            return ("value", {"true": True, "false": False, "null": None}[value])
        if kind == "op" and value == "(":
            inner = self._or()
            self._take(")")
            return inner
        if kind == "field":
            if self._peek() == ("op", "("):
                self._take("(")
                args = []
                if self._peek() != ("op", ")"):
                    args.append(self._or())
                    while self._peek() == ("op", ","):
                        self._take(",")
                        args.append(self._or())
                self._take(")")
                return ("call", value, args)
            return ("field", value)
        raise SyntaxError("unexpected %r in: %s" % (value, self.text))

    # evaluation
    def evaluate(self, row: Dict[str, Any], now: float):
        return self._eval(self.tree, row, now)

    def _eval(self, node, row, now):
        kind = node[0]
        if kind == "value":
            return node[1]
        if kind == "field":
            value = row.get(node[1])
            return None if value == "" else value
        if kind == "neg":
            number = _number(self._eval(node[1], row, now))
            return None if number is None else -number
        if kind == "not":
            value = self._eval(node[1], row, now)
            return None if value is None else not _truth(value)
        if kind == "call":
            return self._call(node[1], node[2], row, now)
        _, op, left_node, right_node = node
        if op in ("AND", "OR", "XOR"):
            left = _truth(self._eval(left_node, row, now))
            if op == "AND" and not left:
                return False
            if op == "OR" and left:
                return True
            right = _truth(self._eval(right_node, row, now))
            return (left != right) if op == "XOR" else right
        left, right = self._eval(left_node, row, now), self._eval(right_node, row, now)
        if left is None or right is None:
            return None
        if op == ".":
            return "%s%s" % (_text(left), _text(right))
        ln, rn = _number(left), _number(right)
        if op in ("+", "-", "*", "/", "%"):
            if ln is None or rn is None:
                if op == "+":
                    return "%s%s" % (_text(left), _text(right))
                return None
            if op == "+":
                return ln + rn
            if op == "-":
                return ln - rn
            if op == "*":
                return ln * rn
            if rn == 0:
                return None
            return ln / rn if op == "/" else ln % rn
        if ln is not None and rn is not None:
            a, b = ln, rn
        else:
            a, b = _text(left), _text(right)
        return {"=": a == b, "==": a == b, "!=": a != b, "<": a < b, ">": a > b,
                "<=": a <= b, ">=": a >= b}[op]

    def _call(self, name, args, row, now):
        values = lambda: [self._eval(arg, row, now) for arg in args]  # noqa: E731
        if name == "now":
            return now
        if name == "if":
            return self._eval(args[1] if _truth(self._eval(args[0], row, now)) else args[2], row, now)
        if name == "case":
            for index in range(0, len(args) - 1, 2):
                if _truth(self._eval(args[index], row, now)):
                    return self._eval(args[index + 1], row, now)
            return None
        if name == "coalesce":
            for value in values():
                if value is not None:
                    return value
            return None
        (first, *rest) = values() if args else (None,)
        if name == "tonumber":
            return _number(first)
        if name == "isnum":
            return isinstance(first, (int, float)) and not isinstance(first, bool)
        if name == "isnull":
            return first is None
        if name == "isnotnull":
            return first is not None
        if name == "round":
            number = _number(first)
            digits = int(rest[0]) if rest else 0
            return None if number is None else round(number, digits)
        raise Unsupported("eval function %s()" % name)


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_assignments(text: str) -> List[Tuple[str, Expression]]:
    out = []
    for part in split_top(text, ","):
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=(?!=)(.*)$", part, re.S)
        if not match:
            raise SyntaxError("not an eval assignment: %r" % part)
        out.append((match.group(1), Expression(match.group(2))))
    return out


# -- a pipeline of the app's maintenance commands ----------------------------------------------
class Pipeline:
    """Runs a search made of the supported commands against a splunkd (splunklib ``Service``).

    ``lookups`` maps a lookup name to (collection, fields_list) as transforms.conf defines it;
    ``collection_types`` gives the collections.conf field types (number fields are written as
    numbers, as Splunk's KV store lookups do).
    """

    def __init__(self, service, app: str, lookups: Dict[str, Tuple[str, List[str]]],
                 collection_types: Optional[Dict[str, Dict[str, str]]] = None,
                 clock: Callable[[], float] = time.time,
                 lookup_settings: Optional[Dict[str, Dict[str, str]]] = None):
        self.service = service
        self.app = app
        self.lookups = lookups
        # transforms.conf stanzas by lookup name (case_sensitive_match, max_matches)
        self.lookup_settings = lookup_settings or {}
        self.collection_types = collection_types or {}
        self.clock = clock
        self.trace: List[str] = []

    def run(self, spl: str, rows: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
        now = self.clock()
        rows = list(rows or [])
        for segment in pipeline(spl):
            for start, end in reversed(subsearches(segment)):
                value = self.run_subsearch(segment[start + 1:end - 1])
                segment = segment[:start] + value + segment[end:]
            name, _, rest = segment.partition(" ")
            self.trace.append(name)
            handler = getattr(self, "_cmd_" + name, None)
            if handler is None:
                raise Unsupported("command %s" % name)
            rows = handler(rest.strip(), rows, now)
        return rows

    def run_subsearch(self, spl: str) -> str:
        rows = self.run(spl)
        if not rows or "__return__" not in rows[0]:
            return ""
        return rows[0]["__return__"]

    # commands
    def _cmd_inputlookup(self, args, rows, now):
        """inputlookup [append=true] <lookup>: the lookup's rows, after the results so far with append."""
        parts = split_args(args)
        name = parts[-1]
        append = any(p.lower() in ("append=true", "append=t", "append=1") for p in parts[:-1])
        collection, fields = self.lookups[name]
        response = self.service.get("storage/collections/data/%s" % collection, owner="nobody", app=self.app,
                                    output_mode="json")
        documents = json.loads(response.body.read().decode("utf-8"))
        out = []
        for document in documents:  # inputlookup shows the fields_list fields, as text
            out.append({key: _text(document[key]) for key in fields if document.get(key) not in (None, "")})
        return (list(rows or []) + out) if append else out

    def _cmd_lookup(self, args, rows, now):
        """lookup <name> <field> [AS <event field>] OUTPUT|OUTPUTNEW <field> [AS <name>] ...

        As Splunk: every matching row of the lookup (up to max_matches, 1000 by default for a
        lookup without a time field) gives its values, several matches a multivalue field (a
        list here); OUTPUT overwrites, OUTPUTNEW fills only fields the event lacks; an event
        without a match gets no values. Matching is case-sensitive unless case_sensitive_match
        = false. One input field only."""
        match = re.match(r"(?i)\s*(\S+)\s+(\S+)(?:\s+AS\s+(\S+))?\s+(OUTPUT|OUTPUTNEW)\s+(.+)$", args, re.S)
        if not match:
            raise Unsupported("lookup %s" % args)
        name, lookup_field, event_field, mode, outputs_text = match.groups()
        event_field = event_field or lookup_field
        outputs = []
        parts = split_args(outputs_text.replace(",", " "))
        index = 0
        while index < len(parts):
            if index + 2 < len(parts) and parts[index + 1].upper() == "AS":
                outputs.append((parts[index], parts[index + 2]))
                index += 3
            else:
                outputs.append((parts[index], parts[index]))
                index += 1
        settings = self.lookup_settings.get(name, {})
        folded = settings.get("case_sensitive_match", "true").lower() in ("false", "f", "0")
        max_matches = int(settings.get("max_matches", 1000))
        table = self._cmd_inputlookup(name, [], now)
        by_value: Dict[str, List[Dict[str, Any]]] = {}
        for entry in table:
            key = entry.get(lookup_field)
            if key is not None:
                by_value.setdefault(key.lower() if folded else key, []).append(entry)
        out = []
        for row in rows:
            row = dict(row)
            value = row.get(event_field)
            found = by_value.get(_text(value).lower() if folded else _text(value), [])[:max_matches] \
                if value not in (None, "") else []
            for source, target in outputs:
                if mode.upper() == "OUTPUTNEW" and row.get(target) not in (None, ""):
                    continue
                values = [entry[source] for entry in found if entry.get(source) not in (None, "")]
                if mode.upper() == "OUTPUT" or values:
                    row[target] = None if not values else values[0] if len(values) == 1 else values
            out.append(row)
        return out

    def _cmd_outputlookup(self, args, rows, now):
        parts = split_args(args)
        options = dict(p.split("=", 1) for p in parts[:-1])
        if options.get("append", "false").lower() not in ("false", "f", "0"):
            raise Unsupported("outputlookup append=true")
        if not rows and options.get("override_if_empty", "true").lower() in ("false", "f", "0"):
            return rows
        collection, _fields = self.lookups[parts[-1]]
        types = self.collection_types.get(collection, {})
        path = "storage/collections/data/%s" % collection
        self.service.delete(path, owner="nobody", app=self.app)  # replaces the collection
        documents = []
        for row in rows:
            document = {}
            for key, value in row.items():
                if value in (None, ""):
                    continue
                if types.get(key) == "number" and _number(value) is not None:
                    value = _number(value)
                document[key] = value
            documents.append(document)
        for start in range(0, len(documents), 1000):
            self.service.post(path + "/batch_save", owner="nobody", app=self.app,
                              headers=[("Content-Type", "application/json")],
                              body=json.dumps(documents[start:start + 1000]))
        return rows

    def _cmd_eval(self, args, rows, now):
        assignments = parse_assignments(args)
        out = []
        for row in rows:
            row = dict(row)
            for name, expression in assignments:
                row[name] = expression.evaluate(row, now)
            out.append(row)
        return out

    def _cmd_where(self, args, rows, now):
        expression = Expression(args)
        return [row for row in rows if _truth(expression.evaluate(row, now))]

    def _cmd_fields(self, args, rows, now):
        names = [n for n in re.split(r"[\s,]+", args) if n]
        if names and names[0] == "-":
            drop = set(names[1:])
            return [{k: v for k, v in row.items() if k not in drop} for row in rows]
        keep = set(names[1:] if names and names[0] == "+" else names)
        return [{k: v for k, v in row.items() if k in keep or k.startswith("_")} for row in rows]

    def _cmd_table(self, args, rows, now):
        """table <field> ...: those fields, in that order (a missing one empty), nothing else."""
        names = [n for n in re.split(r"[\s,]+", args) if n]
        return [{name: row.get(name) for name in names} for row in rows]

    def _cmd_sort(self, args, rows, now):
        """sort [<count>] [+|-]<field> ...: as Splunk, numbers compare as numbers, a missing value
        sorts last; a count of 0 keeps every row (without one, Splunk keeps 10,000)."""
        parts = split_args(args.replace(",", " "))
        limit = 10000
        if parts and parts[0].isdigit():
            limit = int(parts.pop(0)) or len(rows)
        keys = [(part.lstrip("+-"), part.startswith("-")) for part in parts]
        out = list(rows)
        for name, descending in reversed(keys):
            present = [row for row in out if row.get(name) not in (None, "")]
            missing = [row for row in out if row.get(name) in (None, "")]
            present.sort(key=lambda row: _sort_key(row[name]), reverse=descending)
            out = present + missing
        return out[:limit]

    def _cmd_dedup(self, args, rows, now):
        """dedup <field> ...: the first row of each combination of values; as Splunk without
        keepempty=true, a row lacking one of the fields is dropped."""
        names = split_args(args.replace(",", " "))
        seen, out = set(), []
        for row in rows:
            values = tuple(_text(row.get(name)) for name in names)
            if any(row.get(name) in (None, "") for name in names):
                continue
            if values not in seen:
                seen.add(values)
                out.append(row)
        return out

    def _cmd_rest(self, args, rows, now):
        parts = split_args(args)
        path = next(p for p in parts if p.startswith("/"))
        options = dict(p.split("=", 1) for p in parts if "=" in p and not p.startswith("/"))
        if options.get("splunk_server", "local") != "local":
            raise Unsupported("rest splunk_server=%s" % options["splunk_server"])
        try:
            response = self.service.get(path, output_mode="json")
        except Exception as error:  # Splunk's rest shows a warning and returns no rows
            if getattr(error, "status", None) is None:
                raise
            return []
        entries = json.loads(response.body.read().decode("utf-8")).get("entry", [])
        count = int(options.get("count", 0) or 0)
        if count:
            entries = entries[:count]
        out = []
        for entry in entries:
            row = {"title": entry.get("name", "")}
            for key, value in (entry.get("content") or {}).items():
                if not isinstance(value, (dict, list)):
                    row[key] = "" if value is None else _text(value)
            out.append(row)
        return out

    def _cmd_return(self, args, rows, now):
        parts = split_args(args)
        if len(parts) != 1 or not parts[0].startswith("$"):
            raise Unsupported("return %s (only 'return $field')" % args)
        if not rows:
            return []
        value = rows[0].get(parts[0][1:])
        return [{"__return__": "" if value is None else _text(value)}]


def _sort_key(value):
    number = _number(value)
    return (0, number, "") if number is not None else (1, 0, _text(value))


def app_pipeline(service, app: str, transforms: Dict[str, Dict[str, str]],
                 collections: Dict[str, Dict[str, str]], clock: Callable[[], float] = time.time) -> "Pipeline":
    """A Pipeline with an app's KV store lookups (its transforms.conf) and field types (collections.conf),
    both as parsed .conf stanzas."""
    lookups = {name: (stanza["collection"], [f.strip() for f in stanza["fields_list"].split(",")])
               for name, stanza in transforms.items() if stanza.get("external_type") == "kvstore"}
    types = {name: {k[len("field."):]: v for k, v in stanza.items() if k.startswith("field.")}
             for name, stanza in collections.items()}
    return Pipeline(service, app, lookups, types, clock=clock, lookup_settings=transforms)
