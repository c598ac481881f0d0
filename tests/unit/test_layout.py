"""The package's shape: layers that import one way, no cycle, short modules, a pure core.

The import graph is read from the source (ast), imports inside functions included: hiding one there
does not hide it from these tests.
"""

import ast
import pathlib

import pytest

import defender_ipstats

PACKAGE = pathlib.Path(defender_ipstats.__file__).resolve().parent
NAME = "defender_ipstats"
MAX_LINES = 400
# What the pure core may not import, not even inside a function.
NOT_IN_CORE = {"splunklib", "splunk", "requests", "urllib3", "msal", "jsonschema", "jwt", "cryptography", "sqlite3"}
# Which sub-package may import which (besides itself and the package's root).
MAY_IMPORT = {
    "core": set(),
    "microsoft": {"core"},
    "splunk": {"core"},
    "service": {"core", "microsoft", "splunk"},
    "search": {"core", "splunk"},  # never service or microsoft: the search side cannot reach a credential
}
# Imports inside functions name a reason (start-up time) in a comment on their line or just above.
HEAVY = ("requests", "msal", "jsonschema", "jwt", "splunklib")


def _module_name(path: pathlib.Path) -> str:
    parts = [NAME] + list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path):
    """(imported module, line, inside a function) for each import of ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(sub) for node in functions for sub in ast.walk(node)}
    for node in ast.walk(tree):
        inside = id(node) in nested
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, inside
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield module, node.lineno, inside
            for alias in node.names:  # "from . import admin": the submodule is what is imported
                candidate = module + "." + alias.name
                if candidate.startswith(NAME) and _path_of(candidate) is not None:
                    yield candidate, node.lineno, inside


def _path_of(module: str):
    relative = pathlib.Path(*module.split(".")[1:])
    for path in (PACKAGE / relative.with_suffix(".py"), PACKAGE / relative / "__init__.py"):
        if path.is_file():
            return path
    return None


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _graph():
    graph = {}
    for name, path in MODULES.items():
        graph[name] = {module for module, _, _ in _imports(path) if module in MODULES and module != name}
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in MAY_IMPORT) else ""


def test_the_module_graph_has_no_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_graph_sees_imports_inside_functions():
    assert "defender_ipstats.microsoft.defender" in _graph()["defender_ipstats.service.admin"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_the_limit(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, "%s has %d lines" % (name, lines)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_layers_import_one_way(name):
    layer = _layer(name)
    if layer not in MAY_IMPORT:
        return
    allowed = MAY_IMPORT[layer] | {layer, ""}
    wrong = sorted(module for module, _, _ in _imports(MODULES[name])
                   if module.startswith(NAME + ".") and _layer(module) not in allowed)
    assert wrong == [], "%s (%s) imports %s" % (name, layer, wrong)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _layer(n) == "core"))
def test_the_core_imports_only_the_standard_library_and_itself(name):
    for module, line, _ in _imports(MODULES[name]):
        top = module.split(".")[0]
        assert top not in NOT_IN_CORE, "%s:%d imports %s" % (name, line, module)
        if top == NAME:
            assert module == NAME or _layer(module) == "core", "%s:%d imports %s" % (name, line, module)


def test_the_search_side_cannot_reach_the_service_or_microsoft_even_indirectly():
    graph = _graph()
    reached, todo = set(), [n for n in MODULES if _layer(n) == "search"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    assert sorted(m for m in reached if _layer(m) in ("service", "microsoft")) == []


@pytest.mark.parametrize("name", sorted(n for n, path in MODULES.items() if path.name == "__init__.py"))
def test_sub_package_inits_import_nothing(name):
    assert list(_imports(MODULES[name])) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_import_inside_a_function_says_why(name):
    path = MODULES[name]
    lines = path.read_text(encoding="utf-8").splitlines()
    for module, line, inside in _imports(path):
        if not inside:
            continue
        block = line - 1
        while block > 0 and lines[block - 1].strip().startswith(("from ", "import ")):
            block -= 1  # the comment may head a group of imports
        said = any("#" in text for text in lines[block - 1:line])
        assert said, "%s:%d imports %s inside a function without saying why" % (name, line, module)
        heavy = module.split(".")[0] in HEAVY or module.startswith(NAME)
        assert heavy, "%s:%d: %s is cheap to import at the top" % (name, line, module)


@pytest.mark.parametrize("entry", ["defender_ipstats.search.command", "defender_ipstats.service.router"])
def test_what_getinfo_loads_imports_no_slow_library(entry):
    """getinfo loads the command, and the service's handler answers its account request: neither may pay
    for requests, msal, jsonschema or SQLite, which the imports inside functions put off."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; import %s; print(json.dumps(sorted(m for m in ('requests', 'msal', 'jsonschema', "
            "'sqlite3', 'jwt') if m in sys.modules)))" % entry)
    out = subprocess.run([sys.executable, "-c", code], cwd=str(PACKAGE.parent), capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(PACKAGE.parent), "PATH": ""})
    assert json.loads(out.stdout) == []
