# havirt: everything a fresh Debian machine needs is installed from here.
#   make demo   bring a lab cluster up and walk through the main job
#   make test   unit tests, then the lab, the integration tests, lab down
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NODES ?= 3
LAB := tests/lab/lab
# (mount: losetup for the lab's volumes; python3: the lab removes the loop
# devices it made the kernel create)
DEB_PACKAGES := libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu \
	qemu-system-x86 qemu-utils openssh-server openssh-client iproute2 mount python3
# make bench only: Ganeti's hbal, to compare cluster balance with
BENCH_PACKAGES := ganeti-htools

.PHONY: all venv deps bench-deps unit integration test demo bench lab-up lab-down lab-status lab-cache clean

all: venv

# The Python side: a virtualenv with the runtime and test dependencies.
$(VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.done

# The Debian side: only what is missing, so a second run costs nothing.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,$(DEB_PACKAGES))

bench-deps: deps
	$(call install_missing,$(BENCH_PACKAGES))

unit: venv
	$(PY) -m pytest -q tests/unit

integration: venv
	$(PY) -m pytest -q tests/integration

lab-up: deps venv
	$(LAB) up $(NODES)

lab-down:
	$(LAB) down

lab-status:
	$(LAB) status

# The real guests' kernel and initramfs, downloaded (apt-get download, not
# installed) into tests/lab/cache/ once; `lab up` does it when they are missing.
lab-cache:
	$(LAB) cache

# Unit tests first (fast), then the lab; the lab comes down whatever happened.
test: venv deps
	$(PY) -m pytest -q tests/unit
	$(LAB) up $(NODES); rc=$$?; \
	if [ $$rc -eq 0 ]; then $(PY) -m pytest -q tests/integration; rc=$$?; fi; \
	$(LAB) down; exit $$rc

demo: venv deps
	$(LAB) up $(NODES)
	tests/lab/demo

bench: venv bench-deps
	$(PY) bench/bench_balance.py
	$(LAB) up 8; rc=$$?; \
	if [ $$rc -eq 0 ]; then $(PY) bench/bench.py; rc=$$?; fi; \
	$(LAB) down; exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
