"""The KV store query engine: the MongoDB semantics splunkd passes through (queries, sorting,
projection, field types)."""

from __future__ import annotations

import copy
import ipaddress
import json
from typing import Any, Dict, List, Optional, Tuple

_MISSING = object()


def _type_rank(value: Any) -> int:
    # BSON comparison order: null < numbers < strings < objects < arrays < booleans
    if value is None or value is _MISSING:
        return 1
    if isinstance(value, bool):
        return 8
    if isinstance(value, (int, float)):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, dict):
        return 4
    if isinstance(value, list):
        return 5
    return 9


def _bson_eq(left: Any, right: Any) -> bool:
    if _type_rank(left) != _type_rank(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(_bson_eq(a, b) for a, b in zip(left, right))
    if isinstance(left, dict):
        return list(left.keys()) == list(right.keys()) and all(_bson_eq(left[k], right[k]) for k in left)
    if left is None or left is _MISSING:
        return True
    return left == right


def _sort_value(value: Any):
    rank = _type_rank(value)
    if rank == 1:
        return (1, 0)
    if rank in (2, 3, 8):
        return (rank, value)
    if rank == 4:
        return (4, json.dumps(value, sort_keys=True, default=str))
    if rank == 5:
        return (5, tuple(_sort_value(v) for v in value))
    return (9, str(value))


def _path_values(doc: Any, path: str) -> List[Any]:
    """Values reachable by a dotted path; arrays expand like MongoDB's."""
    current = [doc]
    for part in path.split("."):
        nxt = []
        for item in current:
            if isinstance(item, dict):
                if part in item:
                    nxt.append(item[part])
            elif isinstance(item, list):
                if part.isdigit() and int(part) < len(item):
                    nxt.append(item[int(part)])
                for element in item:
                    if isinstance(element, dict) and part in element:
                        nxt.append(element[part])
        current = nxt
    return current


def _candidates(doc: Any, path: str) -> List[Any]:
    out = []
    for value in _path_values(doc, path):
        out.append(value)
        if isinstance(value, list):
            out.extend(value)
    return out


class _QueryError(Exception):
    pass


_FIELD_OPERATORS = {"$gt", "$gte", "$lt", "$lte", "$ne", "$eq", "$in", "$nin", "$not", "$exists"}


def _compare(op: str, cand: Any, operand: Any) -> bool:
    """$gt/$gte/$lt/$lte: only values of the same BSON type bracket compare (MongoDB)."""
    if _type_rank(cand) != _type_rank(operand):
        return False
    left, right = _sort_value(cand), _sort_value(operand)
    if op == "$gt":
        return left > right
    if op == "$gte":
        return left >= right
    if op == "$lt":
        return left < right
    return left <= right


def _field_matches(doc: Dict[str, Any], path: str, condition: Any, convert) -> bool:
    cands = _candidates(doc, path)
    exists = bool(_path_values(doc, path))

    def eq(operand):
        operand = convert(path, operand)
        if operand is None and not exists:
            return True
        return any(_bson_eq(c, operand) for c in cands)

    if isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition):
        for op, operand in condition.items():
            if op not in _FIELD_OPERATORS:
                raise _QueryError("Unsupported operator: " + op)
            if op == "$eq":
                ok = eq(operand)
            elif op == "$ne":
                ok = not eq(operand)
            elif op in ("$gt", "$gte", "$lt", "$lte"):
                operand = convert(path, operand)
                ok = any(_compare(op, c, operand) for c in cands)
            elif op in ("$in", "$nin"):
                if not isinstance(operand, list):
                    raise _QueryError(op + " needs an array")
                ok = any(eq(o) for o in operand)
                if op == "$nin":
                    ok = not ok
            elif op == "$exists":
                ok = exists == bool(operand)
            else:  # $not
                if not isinstance(operand, dict):
                    raise _QueryError("$not needs an object")
                ok = not _field_matches(doc, path, operand, convert)
            if not ok:
                return False
        return True
    return eq(condition)


def _keys_only(query: Any) -> Optional[List[str]]:
    """The keys of a query that only selects by ``_key`` equality ({"_key": k} or an $or of them)."""
    if not isinstance(query, dict) or len(query) != 1:
        return None
    clauses = query.get("$or", [query])
    if not isinstance(clauses, list) or not clauses:
        return None
    keys = []
    for clause in clauses:
        if not (isinstance(clause, dict) and len(clause) == 1 and isinstance(clause.get("_key"), str)):
            return None
        keys.append(clause["_key"])
    return keys


def _query_matches(doc: Dict[str, Any], query: Any, convert) -> bool:
    if not isinstance(query, dict):
        raise _QueryError("query must be a JSON object")
    for key, value in query.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise _QueryError(key + " needs a non-empty array")
            results = [_query_matches(doc, sub, convert) for sub in value]
            if (key == "$and" and not all(results)) or (key == "$or" and not any(results)):
                return False
        elif key == "$not":
            if not isinstance(value, dict):
                raise _QueryError("$not needs an object")
            if _query_matches(doc, value, convert):
                return False
        elif key.startswith("$"):
            raise _QueryError("Unsupported operator: " + key)
        elif not _field_matches(doc, key, value, convert):
            return False
    return True


def _bool_of(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "t", "1", "yes", "y"):
            return True
        if lowered in ("false", "f", "0", "no", "n"):
            return False
    return None


def _number_of(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if number != number or number in (float("inf"), float("-inf")):
            return None
        if number.is_integer() and abs(number) < 2 ** 53:
            return int(number)
        return number
    return None


def _convert_type(field_type: str, value: Any) -> Tuple[bool, Any]:
    """Convert ``value`` to a collection field type; (ok, converted)."""
    if value is None:
        return True, None
    field_type = field_type.strip().lower()
    if field_type in ("number", "time"):
        number = _number_of(value)
        return (number is not None), number
    if field_type == "bool":
        flag = _bool_of(value)
        return (flag is not None), flag
    if field_type == "string":
        if isinstance(value, bool):
            return True, "true" if value else "false"
        if isinstance(value, (int, float, str)):
            return True, value if isinstance(value, str) else json.dumps(value)
        return False, None
    if field_type == "array":
        return isinstance(value, list), value
    if field_type == "cidr":
        if not isinstance(value, str):
            return False, None
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            return False, None
        return True, value.strip()
    return True, value


def _set_path(doc: Dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = doc.get(part)
        if not isinstance(nxt, dict):
            return
        doc = nxt
    doc[parts[-1]] = value


def _del_path(doc: Dict[str, Any], path: str) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = doc.get(part)
        if not isinstance(nxt, dict):
            return
        doc = nxt
    doc.pop(parts[-1], None)


def _project(doc: Dict[str, Any], fields: Optional[str]) -> Dict[str, Any]:
    if not fields:
        return doc
    include, exclude = [], []
    for spec in fields.split(","):
        spec = spec.strip()
        if not spec:
            continue
        name, _, flag = spec.partition(":")
        name = name.strip()
        if name == "_id":
            name = "_key"
        if flag.strip() in ("0", "false"):
            exclude.append(name)
        else:
            include.append(name)
    if include:
        out: Dict[str, Any] = {}
        for name in include:
            if name in doc:
                out[name] = doc[name]
            elif "." in name:
                values = _path_values(doc, name)
                if values:
                    head = name.split(".")[0]
                    sub = out.setdefault(head, {})
                    if isinstance(sub, dict):
                        _nested_set(sub, name.split(".")[1:], values[0])
        if "_key" not in exclude and "_key" in doc:
            out["_key"] = doc["_key"]
        for name in exclude:
            out.pop(name, None)
        return out
    out = copy.deepcopy(doc)
    for name in exclude:
        _del_path(out, name)
    return out


def _nested_set(target: Dict[str, Any], parts: List[str], value: Any) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _sort_docs(docs: List[Dict[str, Any]], sort: Optional[str]) -> List[Dict[str, Any]]:
    if not sort:
        return docs
    specs = []
    for spec in sort.split(","):
        spec = spec.strip()
        if not spec:
            continue
        name, _, direction = spec.partition(":")
        direction = direction.strip() or "1"
        if direction not in ("1", "-1"):
            raise _QueryError("Invalid sort direction: " + spec)
        specs.append((name.strip(), direction == "-1"))
    ordered = list(docs)
    for name, descending in reversed(specs):
        def key(doc, name=name, descending=descending):
            values = _path_values(doc, name)
            if not values:
                return _sort_value(None)
            value = values[0]
            if isinstance(value, list) and value:
                keys = [_sort_value(v) for v in value]
                return max(keys) if descending else min(keys)
            return _sort_value(value)
        ordered.sort(key=key, reverse=descending)
    return ordered


def _json_number_fix(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {k: _json_number_fix(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_number_fix(v) for v in value]
    return value
