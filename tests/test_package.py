"""The built package, unpacked into a SPLUNK_HOME/etc/apps layout (``make test-package``).

Runs only with DEFENDERIPSTATS_APP_ROOT (the unpacked app) and DEFENDERIPSTATS_PYTHON (the
Python that runs the command: a bare pyenv CPython started with -E -s -S, so that it sees the
standard library and the app's lib/ and nothing else, as Splunk's Python sees its own standard
library and the app). DEFENDERIPSTATS_PACKAGE, when set, is the .tgz itself.
"""

import json
import os
import re
import subprocess
import tarfile

import pytest

from harness import APP, APP_ROOT, COMMAND_PYTHON, ROOT

ALLOWED_TOP = {"bin", "default", "lib", "metadata", "appserver", "README", "README.md", "LICENSE", "CHANGELOG.md"}
LIB = os.path.join(APP_ROOT, "lib")


def requirement_pins(name):
    pins = {}
    with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                project, version = line.split("==", 1)
                pins[re.sub(r"[-_.]+", "-", project).lower()] = version.strip()
    return pins


def vendored():
    """{normalised project name: version} from the .dist-info folders in lib/."""
    out = {}
    for entry in os.listdir(LIB):
        if entry.endswith(".dist-info"):
            with open(os.path.join(LIB, entry, "METADATA"), encoding="utf-8") as handle:
                text = handle.read()
            name = re.search(r"^Name: (.+)$", text, re.M).group(1).strip()
            version = re.search(r"^Version: (.+)$", text, re.M).group(1).strip()
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def run_bare(code: str):
    result = subprocess.run([COMMAND_PYTHON, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=APP_ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def archive_members():
    package = os.environ.get("DEFENDERIPSTATS_PACKAGE")
    if not package:
        pytest.skip("DEFENDERIPSTATS_PACKAGE not given")
    with tarfile.open(package, "r:gz") as archive:
        return package, archive.getmembers()


def test_archive_holds_only_what_splunk_needs():
    """The .tgz itself (the unpacked copy gains __pycache__ as soon as a Python runs it)."""
    _, members = archive_members()
    assert {m.name.split("/", 1)[0] for m in members} == {APP}
    paths = [m.name.split("/", 1)[1] for m in members if "/" in m.name]
    tops = {p.split("/", 1)[0] for p in paths}
    assert tops <= ALLOWED_TOP and {"bin", "default", "lib", "metadata", "LICENSE"} <= tops
    for member, path in zip((m for m in members if "/" in m.name), paths):
        parts = path.split("/")
        assert member.isdir() or member.isfile(), path  # no links or devices
        assert member.mode & 0o7777 == (0o755 if member.isdir() else 0o644), path
        assert member.uid == 0 and member.gid == 0, path
        assert not set(parts) & {"__pycache__", "tests", "test", "benchmarks", "local", ".git"}, path
        assert not parts[-1].endswith((".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".exe")), path
        assert parts[-1] not in (".DS_Store", "local.meta") and not parts[-1].startswith("._"), path
    for absent in ("tests", "dev", "bench", "package.sh", "Makefile", "pyproject.toml", "requirements.txt"):
        assert absent not in tops, absent


def test_archive_is_named_after_the_one_version():
    package, _ = archive_members()
    app_conf = open(os.path.join(APP_ROOT, "default", "app.conf"), encoding="utf-8").read()
    version = re.search(r"^\[id\][^\[]*?^version\s*=\s*(\S+)", app_conf, re.M | re.S).group(1)
    assert os.path.basename(package) == "%s-%s.tgz" % (APP, version)
    assert re.search(r"^\[launcher\][^\[]*?^version\s*=\s*%s\s*$" % re.escape(version), app_conf, re.M | re.S)


def test_every_runtime_dependency_is_vendored_pure_python():
    have = vendored()
    for project, version in {**requirement_pins("requirements.txt"),
                             **requirement_pins("requirements-splunklib.txt")}.items():
        assert have.get(project) == version, (project, version, have.get(project))
    # msal's own dependencies that a client secret needs; cryptography is deliberately left out.
    assert {"pyjwt", "certifi", "idna", "charset-normalizer", "attrs", "pyrsistent"} <= set(have)
    assert not {"cryptography", "cffi", "pycparser"} & set(have)


def test_the_python_under_test_sees_only_the_standard_library_and_lib():
    info = run_bare(
        "import json, sys; print(json.dumps({'version': list(sys.version_info[:2]), 'site': 'site' in sys.modules,"
        " 'prefix': sys.prefix, 'base_prefix': sys.base_prefix, 'path': sys.path}))")
    assert info["version"] in ([3, 9], [3, 13])
    assert not info["site"] and info["prefix"] == info["base_prefix"]  # no venv, no site-packages
    assert not [p for p in info["path"] if "site-packages" in p or "dist-packages" in p]


def test_the_packaged_lib_compiles_and_imports_on_this_python():
    info = run_bare(r'''
import json, os, sys
lib = os.path.join(os.getcwd(), "lib")
sys.path.insert(0, lib)
bad = []
for folder, _, files in os.walk(lib):
    for name in files:
        if name.endswith(".py"):
            path = os.path.join(folder, name)
            try:
                compile(open(path, "rb").read(), path, "exec", dont_inherit=True)
            except SyntaxError as error:
                bad.append("%s: %s" % (os.path.relpath(path, lib), error))
import requests, urllib3, msal, jsonschema, jwt, certifi, idna, charset_normalizer
import splunklib.client, splunklib.searchcommands
import defender_ipstats
from defender_ipstats.core import backends, contract, fetcher, gate, hunting, lookup, outcomes, settings
from defender_ipstats.microsoft import certs, defender, entra, http
from defender_ipstats.microsoft import hunting as hunting_client
from defender_ipstats.splunk import budget, conf, jobwatch, kvcache, logs, passwords, published, rest
from defender_ipstats.service import admin, context, lookups, profile, router, tokens
from defender_ipstats.search import alert, chunked, command, enrichment, lean, service_client
import importlib.metadata as md
outside = sorted({m.__file__ for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) and "site-packages" in m.__file__})
print(json.dumps({"bad": bad, "outside": outside, "sdk": md.version("splunk-sdk"),
                  "crypto": sorted(m for m in sys.modules if m.split(".")[0] in ("cryptography", "cffi"))}))
''')
    assert info["bad"] == []
    assert info["outside"] == []
    assert info["sdk"] == requirement_pins("requirements-splunklib.txt")["splunk-sdk"]
    assert info["crypto"] == []  # msal with a client secret does not import cryptography


def test_the_command_runs_from_the_package(app):
    from harness import COMMAND, events

    assert COMMAND.startswith(APP_ROOT)
    run = app.search(["field=src_ip"], [events(["192.0.2.1", "not-an-ip"])])
    assert run.returncode == 0, run.stderr
    assert [r["defender_status"] for r in run.records][1] == "invalid"
    assert "cryptography" not in run.stderr
