# ECS: the two commands are `make demo` and `make test`.
# Both create .venv if it is missing and install the project into it.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TRIAL_JOBS ?= 2
TESTS ?= tests
DETECTORS ?= 0
PORT ?= 8080
REGISTRY_PORT ?= 5000
# SSH admin shell port (empty: 2222 when free, see ecs/shell.py)
SSH_PORT ?=
STATE_DIR ?= var

.PHONY: test check demo install clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

# Editable install in compat mode: the default editable mode hides the plugins from twistd.
# The wheel as users install it is tested by tests/test_install.py.
$(STAMP): $(PY) setup.py pyproject.toml
	$(PIP) install --quiet -e '.[test,check]' --config-settings editable_mode=compat
	$(PY) -c "from twisted.plugin import getPlugins, IPlugin; list(getPlugins(IPlugin))"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m twisted.trial --jobs=$(TRIAL_JOBS) $(TESTS)

# Linters and type checks (configured in pyproject.toml); .ci/run runs this before the tests.
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

demo: $(STAMP)
	$(VENV)/bin/twistd -n --pidfile= ecs-demo --port $(PORT) --registry-port $(REGISTRY_PORT) \
		--state-dir $(STATE_DIR) --detectors $(DETECTORS) $(if $(SSH_PORT),--ssh-port $(SSH_PORT))

bench: $(STAMP)
	$(PY) bench/transport.py
	$(PY) bench/configure.py --detectors 1000

clean:
	rm -rf $(VENV) _trial_temp* build *.egg-info
