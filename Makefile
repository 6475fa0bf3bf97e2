# havirt: everything a fresh Debian machine needs is installed from here.
#   make demo   bring a lab cluster up and walk through the main job
#   make test   unit tests, then the lab, the integration tests, lab down
#   make install [PREFIX=/usr/local] [DESTDIR=]   havirt, its manual page and completions
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NODES ?= 3
LAB := tests/lab/lab
# what the tests check havirt's output with: promtool, node_exporter, man, bash,
# systemd-analyze, virt-xml-validate (and its xmllint), qemu-img; etcd (the
# unit tests of the etcd store run one member, the lab three) and etcdctl
TOOL_PACKAGES := prometheus prometheus-node-exporter man-db groff-base bash systemd \
	libvirt-clients libxml2-utils qemu-utils etcd-server etcd-client
# (mount: losetup for the lab's volumes; python3: the lab removes the loop
# devices it made the kernel create)
DEB_PACKAGES := libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu libvirt-daemon-driver-lxc \
	qemu-system-x86 qemu-utils openssh-server openssh-client iproute2 mount python3 \
	$(TOOL_PACKAGES)
# make bench only: Ganeti's hbal, to compare cluster balance with
BENCH_PACKAGES := ganeti-htools
# make install PREFIX=/usr/local DESTDIR=: where `make install` puts havirt
PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR := $(DESTDIR)$(PREFIX)/lib/havirt
SHAREDIR := $(DESTDIR)$(PREFIX)/share

.PHONY: all venv deps bench-deps tools unit integration test demo bench lab-up lab-down \
	lab-status lab-cache man install uninstall clean

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

tools:
	$(call install_missing,$(TOOL_PACKAGES))

# the unit tests in 4 processes (many of them wait on a real etcd or a
# timer); tests/install's tests share one installed tree, so they run alone
UNIT := $(PY) -m pytest -q -n 4 tests/unit

unit: venv tools
	$(UNIT)

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

# Unit tests first (fast), `make install` into a folder, then the lab; the lab
# comes down whatever happened.
test: venv deps
	$(UNIT) && $(PY) -m pytest -q tests/install
	$(LAB) up $(NODES); rc=$$?; \
	if [ $$rc -eq 0 ]; then $(PY) -m pytest -q tests/integration; rc=$$?; fi; \
	$(LAB) down; exit $$rc

demo: venv deps
	$(LAB) up $(NODES)
	tests/lab/demo

# havirt's modules compiled first, as `make install` (pip) leaves them: where
# PYTHONDONTWRITEBYTECODE is set, every command would compile them again.
bench: venv bench-deps
	$(PY) -m compileall -q havirt
	$(PY) bench/bench_balance.py
	$(LAB) up 64; rc=$$?; \
	if [ $$rc -eq 0 ]; then $(PY) bench/bench.py; rc=$$?; fi; \
	$(LAB) down; exit $$rc

# havirt(1), generated from the click commands
man: venv
	mkdir -p build
	$(PY) -m havirt.cli.manpage > build/havirt.1

# A venv of its own under PREFIX/lib/havirt, the command in PREFIX/bin, the
# manual page, the completion scripts of bash, zsh and fish where those shells
# look under PREFIX, and the sample configuration and systemd units as docs.
# DESTDIR stages it all elsewhere (packaging): nothing installed names DESTDIR.
install:
	$(PYTHON) -m venv --clear $(LIBDIR)
	$(LIBDIR)/bin/pip install -q --disable-pip-version-check --no-warn-script-location $(CURDIR)
	install -d $(DESTDIR)$(PREFIX)/bin $(SHAREDIR)/man/man1 $(SHAREDIR)/doc/havirt \
	  $(SHAREDIR)/bash-completion/completions $(SHAREDIR)/zsh/site-functions \
	  $(SHAREDIR)/fish/vendor_completions.d
	printf '#!/bin/sh\nexec %s -I -m havirt "$$@"\n' '$(PREFIX)/lib/havirt/bin/python' \
	  > $(DESTDIR)$(PREFIX)/bin/havirt
	chmod 755 $(DESTDIR)$(PREFIX)/bin/havirt
	$(LIBDIR)/bin/python -I -m havirt.cli.manpage > $(SHAREDIR)/man/man1/havirt.1
	_HAVIRT_COMPLETE=bash_source $(LIBDIR)/bin/python -I -m havirt \
	  > $(SHAREDIR)/bash-completion/completions/havirt
	_HAVIRT_COMPLETE=zsh_source $(LIBDIR)/bin/python -I -m havirt > $(SHAREDIR)/zsh/site-functions/_havirt
	_HAVIRT_COMPLETE=fish_source $(LIBDIR)/bin/python -I -m havirt \
	  > $(SHAREDIR)/fish/vendor_completions.d/havirt.fish
	install -m 644 config.sample.yaml README.md contrib/havirt-scan.service contrib/havirt-scan.timer \
	  contrib/havirt-alerts.yml \
	  $(SHAREDIR)/doc/havirt/

uninstall:
	rm -rf $(LIBDIR) $(SHAREDIR)/doc/havirt
	rm -f $(DESTDIR)$(PREFIX)/bin/havirt $(SHAREDIR)/man/man1/havirt.1 \
	  $(SHAREDIR)/bash-completion/completions/havirt $(SHAREDIR)/zsh/site-functions/_havirt \
	  $(SHAREDIR)/fish/vendor_completions.d/havirt.fish

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
