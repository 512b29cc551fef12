# ECS: the two commands are `make demo` and `make test`.
# Both create .venv if it is missing and install the project into it.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TRIAL_JOBS ?= 2
TESTS ?= tests

.PHONY: test demo install clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

# Editable install in compat mode: twistd finds the plugins (STACK-NOTES).
$(STAMP): $(PY) setup.py
	$(PIP) install --quiet -e '.[test]' --config-settings editable_mode=compat
	$(PY) -c "from twisted.plugin import getPlugins, IPlugin; list(getPlugins(IPlugin))"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m twisted.trial --jobs=$(TRIAL_JOBS) $(TESTS)

demo: $(STAMP)
	@echo "The demo (ECA, web GUI, PCA) arrives with the ECA and PCA issues."
	@echo "For now it starts the global systems and the demo detectors of etc/demo-inventory.yaml."
	$(VENV)/bin/ecs keys init --dir var/keys 2>/dev/null || true
	$(PY) -m ecs.demo_controllers

bench: $(STAMP)
	$(PY) bench/transport.py

clean:
	rm -rf $(VENV) _trial_temp* build *.egg-info
