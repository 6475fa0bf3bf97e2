"""The unit of work (ops/work.py): one lock, the state read once under it,
one commit under one policy, never nested, never executing on a dry run."""

import pytest

from havirt.errors import Refusal
from havirt.ops.app import App
from havirt.remote.steps import Plan
from havirt.store.home import resolve_home


def make_app(fake, **kw):
    return App.create(resolve_home(str(fake.home), None), None, runner_factory=fake.factory, **kw)


def cluster(fake):
    a = fake.node("node1")
    fake.node("node2")
    a.add("web1")
    fake.conf("web1")
    return a


def test_works_do_not_nest(fake):
    cluster(fake)
    app = make_app(fake, yes=True)
    with app.work():
        with pytest.raises(RuntimeError, match="already open"):
            with app.work():
                pass


def test_a_dry_run_never_reaches_the_executor(fake):
    cluster(fake)
    app = make_app(fake)            # no --yes: config.yaml's dryrun (true)
    with app.work() as w:
        assert w.dry_run
        with pytest.raises(RuntimeError, match="dry run reached the executor"):
            w.run(Plan())
    assert fake.calls == []


def test_a_dry_run_scan_is_not_written(fake):
    cluster(fake)
    before = fake.state_file.read_bytes()
    with make_app(fake).work() as w:
        w.scan()
        assert w.state.domains["web1"].node == "node1"     # folded in memory
    assert fake.state_file.read_bytes() == before


def test_an_admin_fact_is_written_even_on_a_dry_run(fake):
    cluster(fake)
    with make_app(fake).work() as w:
        w.scan()
        w.state.nodes["node2"].maintenance = True
        w.changed()
    assert fake.state().nodes["node2"].maintenance is True


def test_a_changing_work_records_its_scan_even_when_it_is_then_refused(fake):
    cluster(fake)
    app = make_app(fake, yes=True)
    with pytest.raises(Refusal):
        with app.work() as w:
            w.scan()
            raise Refusal("no")
    assert fake.state().domains["web1"].node == "node1"


def test_a_work_that_records_nothing_writes_nothing(fake):
    cluster(fake)
    before = fake.state_file.read_bytes()
    with make_app(fake, yes=True).work(record=False) as w:
        w.scan()
    assert fake.state_file.read_bytes() == before


def test_the_state_is_read_once_under_the_lock(fake):
    """What another command wrote before the lock was taken is what the work sees."""
    cluster(fake)
    app = make_app(fake, yes=True)
    assert app.state.nodes["node2"].maintenance is False    # read before, outside any work
    st = fake.state()
    st.nodes["node2"].maintenance = True
    from havirt.store.state import save_state
    save_state(fake.state_file, st)
    with app.work() as w:
        assert w.state.nodes["node2"].maintenance is True
    assert app.state.nodes["node2"].maintenance is True      # and after it, what it left


def test_only_the_unit_of_work_locks_and_saves():
    """No operation decides locking or saving by itself: above the store
    (whose backends implement them), `locked` is called by App.work alone,
    `save_state` by Work.commit alone; `store migrate` also locks the store it
    moves the facts into (not the home's store yet, so no work can)."""
    import ast
    from pathlib import Path
    pkg = Path(__file__).resolve().parents[2] / "havirt"
    callers = {"locked": set(), "save_state": set()}
    for path in pkg.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                where = str(path.relative_to(pkg))
                if name in callers and not where.startswith("store/"):
                    callers[name].add(where)
    assert callers == {"locked": {"ops/app.py", "ops/storemove.py"}, "save_state": {"ops/work.py"}}


def test_a_silent_node_is_not_asked_again_by_the_work_unless_named(fake):
    cluster(fake)
    fake.nodes["node2"].reachable = False
    with make_app(fake, yes=True).work() as w:
        first = w.scan().cluster
        again = w.scan().cluster                     # every node: node2's answer stands
        asked = [n for n, _ in fake.calls]
        assert asked.count("node2") == 1 and asked.count("node1") == 2, asked
        assert not again.nodes["node2"].reachable
        assert again.nodes["node2"].error == first.nodes["node2"].error
        fake.nodes["node2"].reachable = True
        named = w.scan(["node2"]).cluster            # named: asked, and it answers now
        assert named.nodes["node2"].reachable
        w.scan()                                     # answered: asked again by every-node scans
        assert [n for n, _ in fake.calls].count("node2") == 3
    assert fake.state().nodes["node2"].silent_scans == 0
