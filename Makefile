# Every target sets itself up on a fresh machine: a .venv with the project installed,
# and the embedded broker's jars from Maven Central when a broker is needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test test-fast stress lint setup docs broker-start broker-stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The headline job: the large-message sweep (starts the embedded broker if nothing answers).
bench: $(STAMP)
	$(PY) -m bench large-message

# The whole test suite against a real broker (KAFKA_BOOTSTRAP_SERVERS, else the embedded one,
# whose jars are fetched first so no test pays for the download). Many tests wait through
# fixed-length runs and fault timelines, so they run in TEST_WORKERS pytest-xdist workers (three
# per core here: on 2 cores, 6 workers took the parallel phase from 599 to 528 s, 4 left CPU
# idle), each with its own embedded broker; the brokers that tests fault are started once and
# their tests kept on one worker (--dist loadgroup, tests/conftest.py). The 15 slowest tests are
# listed at the end.
TEST_WORKERS ?= 6
# tests/test_kafka_versions.py also runs one short run on the previous default (3.x line), on
# its own embedded broker: its jars are fetched before the tests too.
PREVIOUS_KAFKA_VERSION := 3.8.1
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadgroup --durations=15
# Tests marked timing (latency truth, the regression gate, a stalled generator) judge latencies
# that the other workers' brokers on the same cores would distort: they run alone, afterwards.
test: $(STAMP)
	@[ -n "$$KAFKA_BOOTSTRAP_SERVERS" ] || $(PY) -m bench broker provision
	$(PY) -m bench broker provision --kafka-version $(PREVIOUS_KAFKA_VERSION)
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not timing"
	$(PY) -m pytest -m timing --durations=5

# The same without the tests marked slow (each over ~30 s on its own: minute-long fault runs,
# the 1 GB message, the regression gate's three runs).
test-fast: $(STAMP)
	@[ -n "$$KAFKA_BOOTSTRAP_SERVERS" ] || $(PY) -m bench broker provision
	$(PY) -m bench broker provision --kafka-version $(PREVIOUS_KAFKA_VERSION)
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not slow and not timing"
	$(PY) -m pytest -m "timing and not slow"

# Shake out races before CI does (docs/contributing.md): the tests that start and stop processes
# or nodes, STRESS_REPEAT times in a row, with every core kept busy and pytest started as a CI
# runner may start it (a background job: SIGINT ignored), ended after STRESS_MINUTES at most.
# STRESS_TESTS=tests/x.py::test_y chooses others.
STRESS_REPEAT ?= 5
STRESS_MINUTES ?= 60
STRESS_TESTS ?=
stress: $(STAMP)
	@[ -n "$$KAFKA_BOOTSTRAP_SERVERS" ] || $(PY) -m bench broker provision
	$(PY) tests/stress.py --repeat $(STRESS_REPEAT) --max-minutes $(STRESS_MINUTES) $(STRESS_TESTS)

# Style and correctness checks (ruff), and the import layers of docs/architecture.md
# (import-linter); both configured in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Re-runs the console blocks of README.md and docs/*.md and writes their output in place
# (tests/docs_run.py): the blocks without a broker, then those with the embedded broker on
# DOCS_PORT. ALL=1 adds the long ones (clusters, chaos, large messages); DOCS_ARGS passes more
# (e.g. --fast, --file docs/locust.md, --block docs/faults.md:167, --map-port 19092=29910).
# Review the diff, then commit.
DOCS_PORT ?= 19192
docs: $(STAMP)
	$(PY) tests/docs_run.py --port $(DOCS_PORT) $(if $(ALL),--all) $(DOCS_ARGS)

broker-start: $(STAMP)
	$(PY) -m bench broker start

broker-stop: $(STAMP)
	$(PY) -m bench broker stop

clean:
	rm -rf $(VENV) .state .pytest_cache
