"""Integration tests: havirt against the lab (tests/lab/lab), real SSH, real KVM.

The lab must be up (`make lab-up`, or `tests/lab/lab up 3`). Every test gets a
fresh havirt home in tmp_path (the lab's config.yaml and conf/*.xml, then
`havirt node add` of every lab node through the real CLI). After every test,
also when it failed, faults are undone and every domain on every node is
destroyed and undefined; the test then checks the lab is clean.

Effects are always checked on the nodes themselves (`virsh` through
`tests/lab/lab exec`), never from havirt's own output alone.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from labkit import LAB_ENV, LAB_SCRIPT, REPORT, Havirt, Lab, make_home, read_env


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("havirt integration report")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def lab() -> Lab:
    if not LAB_ENV.exists():
        pytest.fail(f"the lab is not up ({LAB_ENV} is missing): run `make lab-up` "
                    "(or tests/lab/lab up 3) before the integration tests", pytrace=False)
    # a run killed half-way may have left a fault behind (a node powered off,
    # leases switched off): undo them (idempotent)
    first = Lab(read_env())
    first.undo_faults()
    first.restore_leases(first.nodes)
    p = subprocess.run([str(LAB_SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        pytest.fail("the lab is not up or not healthy (tests/lab/lab status):\n"
                    f"{p.stdout}{p.stderr}\nrun `make lab-up` (tests/lab/lab up 3)", pytrace=False)
    env = read_env()
    lab = Lab(env)
    cfg = yaml.safe_load((lab.home / "config.yaml").read_text())
    if not (cfg.get("migrate") or {}).get("unsafe"):
        pytest.fail(f"{lab.home}/config.yaml has no 'migrate: unsafe: true' section: "
                    "rerun `tests/lab/lab up 3`", pytrace=False)
    if lab.n < 3:
        pytest.fail(f"the integration tests need 3 lab nodes, the lab has {lab.n}: "
                    "run `tests/lab/lab up 3`", pytrace=False)
    return lab


@pytest.fixture(autouse=True)
def clean_lab(lab):
    """Before: the lab must be clean (cleaned if a previous run left something).
    After (also on failure): undo faults, destroy and undefine everything, check."""
    left = lab.wipe()
    assert not left, f"lab not clean before the test: {left}"
    yield
    lab.undo_faults()
    left = lab.wipe()
    assert not left, f"lab not clean after the test: {left}"


@pytest.fixture
def hv(lab, tmp_path) -> Havirt:
    """A fresh havirt home with every lab node added."""
    h = make_home(lab, tmp_path / "home")
    yield h
    h.kill_all()


@pytest.fixture
def new_home(lab, tmp_path):
    """Factory of further homes (e.g. a second admin machine)."""
    made = []

    def make(name: str = "home2", add_nodes: bool = True, **config) -> Havirt:
        h = make_home(lab, tmp_path / name, add_nodes, **config)
        made.append(h)
        return h
    yield make
    for h in made:
        h.kill_all()


