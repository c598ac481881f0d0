"""Shared pytest set-up.

``lib/``, ``tests/`` (the stand-ins) and ``tests/support/`` (the harness, the protocol driver, the fault
matrix, the SPL pipeline) are importable, so tests in ``unit/``, ``integration/`` and ``system/`` import them
by their own names. Integration fixtures start the project's own stand-ins on
127.0.0.1 (a plain-HTTP splunkd, an HTTPS Defender + Entra ID with a throwaway CA) and run the real
command, ``bin/defenderipstats.py``, as a subprocess speaking protocol v2 exactly as splunkd does.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(ROOT, "lib"), os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "support")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import pytest  # noqa: E402

# The package checks need an unpacked package: `make test` runs them in its package stage
# (dev/test_package.sh sets DEFENDERIPSTATS_APP_ROOT); a plain pytest run leaves them out.
collect_ignore = [] if os.environ.get("DEFENDERIPSTATS_APP_ROOT") else ["system/test_package.py"]

from harness import APP_ROOT, COMMAND_PYTHON, AppHarness  # noqa: E402


@pytest.fixture
def defender():
    from standins.defender import DefenderStandin

    standin = DefenderStandin().start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def splunkd():
    from standins.splunkd import SplunkdStandin

    # The app's persistent REST handler (the token broker) runs with the Python that runs the command.
    standin = SplunkdStandin(apps={"TA-defender-ipstats": APP_ROOT}, python=COMMAND_PYTHON).start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def app(splunkd, defender, tmp_path):
    """The app installed in a fresh SPLUNK_HOME, one account configured through REST, ready to search."""
    harness = AppHarness(splunkd, defender, tmp_path)
    harness.configure_account()
    return harness


@pytest.fixture
def bare_app(splunkd, defender, tmp_path):
    """The app installed, nothing configured."""
    return AppHarness(splunkd, defender, tmp_path)
