# Quick start: `make demo` runs the demo, `make test` runs the tests (both set themselves up).
.PHONY: setup demo test test-3.9 test-3.13 test-package appinspect lint bench reliability package clean

PYTESTS ?= 3.9 3.13

setup:
	@./dev/bootstrap.sh
	@./dev/browser_deps.sh
	@./dev/kql_deps.sh

demo: setup
	.venv/py3.13/bin/python dev/demo.py

test: setup lint
	@set -e; for v in $(PYTESTS); do echo "== tests on Python $$v"; .venv/py$$v/bin/python -m pytest -q -p no:cacheprovider; done
	@./dev/test_package.sh

test-3.9 test-3.13: setup
	.venv/py$(subst test-,,$@)/bin/python -m pytest -q -p no:cacheprovider

lint: setup
	.venv/py3.13/bin/ruff check bin lib tests bench dev

bench: setup
	.venv/py3.13/bin/python bench/bench.py

# The fault matrix (tests/support/faults.py) as one table: events in/out, API calls, 429s, cache, leaks.
reliability: setup
	.venv/py3.13/bin/python bench/reliability.py

package:
	./package.sh

# The package as shipped: build, AppInspect (cloud), protocol tests on bare Python 3.9 and 3.13.
test-package: setup
	./dev/test_package.sh

appinspect:
	./dev/appinspect.sh

clean:
	rm -rf .venv dist build .demo
