"""tools/mutate.py (the mutation-testing developer tool) on a tiny project of its own: it lists
its mutants, kills the one a test sees, reports the ones no test sees, and leaves the sources
as they were.  The real mutation run is not part of the test suite (see docs/mutation.md)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "mutate.py"

SOURCE = '''"""A docstring: 1 + 2 is not mutated."""


def scale(x):
    return 2 * x


def unused(x):  # no test calls this one
    return x - 1
'''


def load_tool():
    spec = importlib.util.spec_from_file_location("mutate_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutate_tool", module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules["mutate_tool"])
    return sys.modules["mutate_tool"]


def tiny_project(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(SOURCE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_mod.py").write_text(
        "from pkg.mod import scale\n\n\ndef test_scale():\n    assert scale(3) == 6\n")
    return tmp_path


def run_tool(root, *args):
    return subprocess.run([sys.executable, str(TOOL), "--root", str(root), "--files", "pkg/mod.py",
                           "--tests", "tests/test_mod.py", *args],
                          capture_output=True, text=True, timeout=120)


def test_tokens_are_mutated_one_at_a_time(tmp_path):
    tool = load_tool()
    path = tmp_path / "m.py"
    path.write_text("def f(a, b, *args, c=0.5):\n    return -a - b.T * 2, a.sum(axis=0, keepdims=True)  # 3 + 4\n")
    mutants = {m.id.split(":", 1)[1]: m for m in tool.find_mutants(path, tmp_path)}
    assert set(mutants) == {
        "1:21:0.5->1.0",              # a default value
        "2:11:-->", "2:14:-->+",      # the unary minus removed; the binary minus swapped
        "2:17:.T->", "2:20:*->/", "2:22:2->3",
        "2:36:0->1",                  # axis=0 -> axis=1
        "2:48:True->False",           # keepdims
    }  # the star of *args, the comment and the docstring are left alone
    assert mutants["2:17:.T->"].apply(path.read_text()).splitlines()[1].startswith(
        "    return -a - b * 2")


def test_list_and_one_killed_one_surviving(tmp_path):
    root = tiny_project(tmp_path)
    listing = run_tool(root, "--list")
    assert listing.returncode == 0, listing.stderr
    assert "pkg/mod.py:5:11:2->3" in listing.stdout and "pkg/mod.py:9:13:-->+" in listing.stdout
    assert "5 mutants" in listing.stdout

    out = run_tool(root, "--match", "pkg/mod.py:", "--json", str(root / "r.json"), "--seed", "0",
                   "--limit", "2", "--fail-under", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    results = {r["id"]: r["status"] for r in json.loads((root / "r.json").read_text())["results"]}
    assert len(results) == 2
    # a random sample (seed 0) of 2: one mutant of scale() (tested), one of unused() (not)
    assert results == {"pkg/mod.py:9:13:-->+": "survived", "pkg/mod.py:5:13:*->/": "killed"}
    assert "score: 1/2 non-equivalent mutants killed = 50.0%" in out.stdout
    assert "survivors" in out.stdout and "  pkg/mod.py:9:13:-->+" in out.stdout
    assert (root / "pkg" / "mod.py").read_text() == SOURCE  # the sources are never touched


def test_function_names_and_the_backward_scope(tmp_path):
    tool = load_tool()
    path = tmp_path / "m.py"
    path.write_text("X = 1\n\n\nclass A:\n    def forward(self, x):\n        return x * 2\n\n"
                    "    def __post_init__(self):\n        assert self.n > 0\n\n\n"
                    "def rnn_backward(d):\n    def step(c):\n        return c + 1\n    return step(d)\n")
    where = {m.line: m.function for m in tool.find_mutants(path, tmp_path)}
    assert where == {1: "<module>", 6: "A.forward", 9: "A.__post_init__",
                     14: "rnn_backward.step"}
    in_scope = tool.SCOPES["backward"]
    assert [in_scope(f) for f in ("<module>", "A.forward", "A.__post_init__", "rnn_backward.step",
                                  "Conv2D._check", "train.run", "GAN._d_grads")] == \
        [False, True, False, True, False, False, True]


def test_default_scope_maps_every_layer_module_to_existing_fast_tests():
    tool = load_tool()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "jaxnet" / "layers").glob("*.py")}
    assert modules | {"jaxnet/sequential.py", "jaxnet/gan.py"} <= set(tool.DEFAULT_TESTS)
    fast = (ROOT / "tests" / "test_layers_fast.py").read_text()
    for module in modules | {"jaxnet/sequential.py", "jaxnet/gan.py"}:
        tests = tool.DEFAULT_TESTS[module]
        if module not in {"jaxnet/layers/protocol.py", "jaxnet/layers/registry.py"}:
            # backward code: the fast proofs first (the protocol checks and the registry hold
            # none; their own tests kill their mutants)
            assert tests[0].startswith("tests/test_layers_fast.py"), module
        for t in tests:
            path, _, name = t.partition("::")
            assert (ROOT / path).is_file(), t
            assert not name or f"def {name}(" in fast, t
