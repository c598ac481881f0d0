"""Shared pytest set-up: the app's lib/ and the tests folder are importable."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(ROOT, "lib"), os.path.join(ROOT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)
