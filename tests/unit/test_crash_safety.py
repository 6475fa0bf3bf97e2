"""havirt killed (SIGKILL) while writing the state: the file is the old one
or the new one, never broken, and no temporary file is mistaken for it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from havirt.store.state import load_state

ROOT = Path(__file__).resolve().parents[2]

WRITER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from havirt.store.state import DomainRecord, NodeRecord, State, save_state
path = Path(sys.argv[2])
gen = 0
while True:
    gen += 1
    st = State()
    st.nodes["n1"] = NodeRecord(name="n1", address="10.0.0.1", cpus=gen)
    for i in range(3000):
        st.domains[f"d{i}"] = DomainRecord(name=f"d{i}", node="n1", state="running",
                                           memory_mib=gen, vcpus=1)
    save_state(path, st)
    print(gen, flush=True)
"""


def test_sigkill_while_saving_never_leaves_a_broken_state(tmp_path):
    path = tmp_path / "state.yaml"
    seen_generations = set()
    for round_ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(path)],
                                stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()                 # at least one full write happened
        time.sleep(0.013 * (round_ % 5))       # then die at some point of a later write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        st = load_state(path)                  # raises on a broken file
        gen = st.nodes["n1"].cpus
        assert len(st.domains) == 3000
        assert {d.memory_mib for d in st.domains.values()} == {gen}   # one whole generation
        seen_generations.add(gen)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "state.yaml"]
    # a temporary file may remain after a kill; it is never the state itself
    assert all(name.startswith(".state.") for name in leftovers)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
