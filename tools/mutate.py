#!/usr/bin/env python3
"""Mutation testing for jaxnet: plant one single-token bug at a time and see if the tests notice.

    python tools/mutate.py --list                        # the mutants, nothing run
    python tools/mutate.py --files jaxnet/losses.py --limit 5 --seed 0
    python tools/mutate.py                               # every mutant of the default files

Each mutant changes exactly one token of one source file (see MUTATIONS below).  The tool copies
the files it needs (the package directories of the mutated files and the test directories,
plus pyproject.toml) into a temporary directory, checks that the copy is what Python imports,
runs the unmutated tests once there (they must pass), and then, for every mutant, writes the
mutated file into the copy, runs ``python -m pytest -x -q -p no:xdist`` on that file's fast
tests with a timeout, and writes the original back (in a ``finally``: also on Ctrl-C or a
timeout).  The working tree itself is never modified, so tests run by other people in the same
checkout are not disturbed.

A mutant is *killed* when the tests fail (or time out, or no longer import), *survives* when they
pass.  The score is killed / (mutants − listed equivalents); the survivors are printed with
file:line:col and the mutation, to be either killed by a new test or listed as equivalent (in
``tools/equivalent_mutants.txt``, one ``<mutant id>  # why`` per line).  See docs/mutation.md.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import io
import json
import keyword
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The fast tests that should kill the mutants of each file (paths or pytest node ids relative to
# the root), in the order they run: pytest stops at the first failure (-x), so the focused proofs
# of tests/test_layers_fast.py come first and kill most mutants in seconds; the family's own test
# file follows (a survivor of the fast tests costs its whole run).
FAST = "tests/test_layers_fast.py::"
DEFAULT_TESTS = {
    "jaxnet/activations.py": ["tests/test_activations.py"],
    "jaxnet/losses.py": ["tests/test_losses.py"],
    "jaxnet/backprop.py": ["tests/test_backprop.py"],
    "jaxnet/formulas.py": ["tests/test_formulas.py"],
    "jaxnet/gradcheck.py": ["tests/test_gradcheck.py"],
    "jaxnet/layers/__init__.py": ["tests/test_layers_fast.py"],
    "jaxnet/layers/base.py": ["tests/test_layers_fast.py", "tests/test_layers_conv.py"],
    "jaxnet/layers/dense.py": [FAST + "test_dense", FAST + "test_transformer_block_causal",
                               FAST + "test_sequential_backprop_equals_grad_of_cost",
                               "tests/test_sequential.py"],
    "jaxnet/layers/conv.py": [FAST + "test_conv2d", FAST + "test_pooling_with_ties",
                              FAST + "test_flatten", FAST + "test_same_padding_worked_by_hand",
                              "tests/test_layers_conv.py"],
    "jaxnet/layers/recurrent.py": [FAST + "test_recurrent_with_initial_states",
                                   "tests/test_layers_recurrent.py"],
    "jaxnet/layers/embedding.py": [FAST + "test_embedding_repeated_ids",
                                   FAST + "test_positional_embedding",
                                   "tests/test_layers_attention.py"],
    "jaxnet/layers/normalization.py": [FAST + "test_layernorm",
                                       FAST + "test_transformer_block_causal",
                                       "tests/test_layers_attention.py"],
    "jaxnet/layers/attention.py": [FAST + "test_scaled_dot_product_attention",
                                   FAST + "test_attention_large_scores_stay_finite",
                                   FAST + "test_multi_head_attention",
                                   FAST + "test_transformer_block_causal",
                                   "tests/test_layers_attention.py"],
    "jaxnet/layers/protocol.py": ["tests/test_custom_layers.py"],
    "jaxnet/layers/registry.py": ["tests/test_custom_layers.py", "tests/test_checkpoint.py"],
    "jaxnet/sequential.py": [FAST + "test_sequential_backprop_equals_grad_of_cost",
                             FAST + "test_as_sequential_computes_the_mlp",
                             FAST + "test_gan_backprop_equals_grad", "tests/test_sequential.py"],
    "jaxnet/gan.py": [FAST + "test_gan_losses_and_their_gradients",
                      FAST + "test_gan_backprop_equals_grad", "tests/test_gan.py"],
}
# `--scope backward`: the code a hand-written gradient depends on (forward, cost, backward and
# the shapes they use).  A mutant is left out when any enclosing function (by name, at any
# nesting level) is one of these: parameter initialisation, input validation, configuration,
# description, the GAN's training loop and checkpoints.  Module-level code is left out too.
NOT_BACKWARD = frozenset("""
    __post_init__ __str__ __getstate__ init _init _init_params _orthogonal_blocks conv_weights
    _pair _padding_pair _as_option describe n_params to_config from_config _jsonable _from_json
    _spec _shape_of shapes output_shape L noise noise_shape noise_dim sample_shape
    train save load load_checkpoint _per_player _chunk _game_step _d_update _as_network
""".split())
SCOPES = {"backward": lambda qualname: qualname != "<module>" and not any(
    part in NOT_BACKWARD or part.startswith(("_check", "check_"))
    for part in qualname.split("."))}
DEFAULT_EQUIVALENT = ROOT / "tools" / "equivalent_mutants.txt"
NO_MUTATE = "pragma: no mutate"

# The single-token mutations: arithmetic, comparison, augmented assignment swaps.
SWAPS = {"+": "-", "-": "+", "*": "/", "/": "*", ">": ">=", ">=": ">", "<": "<=", "<=": "<",
         "+=": "-=", "-=": "+=", "*=": "/=", "/=": "*="}
BINARY_ONLY = {"+", "-", "*", "/"}  # these are operators only between two operands
MUTATIONS = """\
arith      a + b <-> a - b,  a * b <-> a / b,  += <-> -=,  *= <-> /=
compare    > <-> >=,  < <-> <=
unary      -x -> x  (a unary minus removed)
const      0 -> 1;  1 -> 0 and 1 -> 2;  0.0 -> 1.0;  1.0 -> 0.0 and 2.0;  0.5 -> 1.0;
           other numbers: integers n -> n + 1, floats c -> 10 c
axis       axis=0 <-> axis=1  (replaces const for the number after `axis=`)
bool       True <-> False  (keepdims=..., defaults, flags)
transpose  x.T -> x
Lines with a '# pragma: no mutate' comment are skipped."""


@dataclass(frozen=True)
class Mutant:
    path: str        # relative to the root, '/' separated
    line: int        # 1-based
    col: int         # 0-based column of the first character replaced
    end_col: int     # 0-based column after the last character replaced (same line)
    kind: str
    original: str
    replacement: str
    function: str = field(default="<module>", compare=False)  # enclosing def, e.g. "Dense.backward"

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}:{self.col}:{self.original}->{self.replacement}"

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        text = lines[self.line - 1]
        assert text[self.col:self.end_col] == self.original, (self.id, text)
        lines[self.line - 1] = text[:self.col] + self.replacement + text[self.end_col:]
        return "".join(lines)


def _is_operand_end(tok) -> bool:
    """True where the previous token ends an operand, so a following '-' is binary."""
    if tok is None:
        return False
    if tok.type in (tokenize.NUMBER, tokenize.STRING):
        return True
    if tok.type == tokenize.NAME:
        return not keyword.iskeyword(tok.string) or tok.string in ("True", "False", "None")
    return tok.string in (")", "]", "}")


def _const_replacements(text: str) -> list[str]:
    fixed = {"0": ["1"], "1": ["0", "2"], "0.0": ["1.0"], "1.0": ["0.0", "2.0"],
             "0.5": ["1.0"], "0.": ["1."], "1.": ["0.", "2."]}
    if text in fixed:
        return fixed[text]
    clean = text.replace("_", "")
    if clean.isdigit():
        return [str(int(clean) + 1)]
    try:
        value = Decimal(clean)
    except InvalidOperation:  # hex, octal, complex: left alone
        return []
    return [format((value * 10).normalize(), "g")]


def function_names(source: str) -> list[str]:
    """The qualified name of the innermost function around each line (index 0 is line 1):
    ``"Dense.backward"``, ``"rnn_backward.step"`` (a nested def), ``"<module>"`` outside any."""
    names = ["<module>"] * (len(source.splitlines()) + 1)

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    first = min([d.lineno for d in child.decorator_list] + [child.lineno])
                    for line in range(first, child.end_lineno + 1):
                        names[line - 1] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return names


def find_mutants(path: Path, root: Path = ROOT) -> list[Mutant]:
    """Every single-token mutant of one Python file, in source order."""
    source = path.read_text()
    functions = function_names(source)
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    lines = source.splitlines()
    toks = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.COMMENT, tokenize.ENCODING, tokenize.ENDMARKER)]
    out = []
    for i, tok in enumerate(toks):
        (line, col), (end_line, end_col) = tok.start, tok.end
        if end_line != line or NO_MUTATE in lines[line - 1]:
            continue
        prev = toks[i - 1] if i else None
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        def add(kind, repl, end=end_col, orig=tok.string, line=line, col=col):
            out.append(Mutant(rel, line, col, end, kind, orig, repl, functions[line - 1]))

        if tok.type == tokenize.OP:
            s = tok.string
            if s in SWAPS and (s not in BINARY_ONLY or _is_operand_end(prev)):
                add("compare" if s[0] in "<>" else "arith", SWAPS[s])
            elif s == "-" and not _is_operand_end(prev):
                add("unary", "")
            elif s == "." and nxt is not None and nxt.string == "T" and nxt.start[0] == line:
                add("transpose", "", nxt.end[1], "." + " " * (nxt.start[1] - end_col) + "T")
        elif tok.type == tokenize.NUMBER:
            if (i >= 2 and prev.string == "=" and toks[i - 2].string == "axis"
                    and tok.string in ("0", "1")):
                add("axis", "1" if tok.string == "0" else "0")
            else:
                for repl in _const_replacements(tok.string):
                    add("const", repl)
        elif tok.type == tokenize.NAME and tok.string in ("True", "False"):
            add("bool", "False" if tok.string == "True" else "True")
    return out


# --- running ---------------------------------------------------------------------------------
@dataclass
class Result:
    id: str
    status: str      # killed, survived, timeout (counts as killed), equivalent, error
    seconds: float
    detail: str = ""


_ACTIVE: set = set()  # running pytest processes, killed on Ctrl-C


def _run_pytest(workdir: Path, tests: list[str], timeout: float, extra: list[str]):
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
           "--hypothesis-seed=0", *extra, *tests]
    env = {**os.environ, "PYTHONPATH": str(workdir), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _ACTIVE.add(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out
    finally:
        _ACTIVE.discard(proc)


def _make_workdir(root: Path, files: list[str], tests: list[str]) -> Path:
    """A copy of the top-level directories the run needs, plus pyproject.toml/conftest.py."""
    work = Path(tempfile.mkdtemp(prefix="jaxnet-mutate-"))
    tops = sorted({Path(p).parts[0] for p in [*files, *tests]})
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for top in tops:
        src = root / top
        if src.is_dir():
            shutil.copytree(src, work / top, ignore=ignore)
        else:
            shutil.copy2(src, work / top)
    for name in ("pyproject.toml", "setup.cfg", "pytest.ini", "conftest.py"):
        if (root / name).is_file():
            shutil.copy2(root / name, work / name)
    return work


def _check_imports_copy(work: Path, files: list[str]) -> None:
    """The copy, not the checkout (an editable install), must be what the tests import."""
    for rel in files:
        parts = Path(rel).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        code = f"import importlib; print(importlib.import_module({module!r}).__file__)"
        env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        found = subprocess.run([sys.executable, "-c", code], cwd=work, env=env,
                               capture_output=True, text=True, timeout=120)
        if found.returncode or not Path(found.stdout.strip()).resolve().is_relative_to(
                work.resolve()):
            raise SystemExit(f"mutate: {module} imports from {found.stdout.strip() or '?'} "
                             f"instead of the copy in {work}: {found.stderr[-500:]}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_mutant(m: Mutant, work: Path, tests: list[str], timeout: float, extra) -> Result:
    target = work / m.path
    original = target.read_text()
    start = time.perf_counter()
    try:
        target.write_text(m.apply(original))
        rc, out = _run_pytest(work, tests, timeout, extra)
    finally:
        target.write_text(original)  # always restored, also on Ctrl-C
    seconds = time.perf_counter() - start
    tail = out.strip().splitlines()[-1] if out.strip() else ""
    if rc is None:
        return Result(m.id, "timeout", seconds, f"no result after {timeout:.0f} s")
    if rc == 0:
        return Result(m.id, "survived", seconds, tail)
    if rc in (1, 2, 3):  # tests failed, collection/import error, internal error
        return Result(m.id, "killed", seconds, tail)
    return Result(m.id, "error", seconds, f"pytest exit {rc}: {tail}")


def load_equivalent(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            mid, _, why = line.partition("#")
            out[mid.strip()] = why.strip()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="mutations:\n" + MUTATIONS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", nargs="+", default=list(DEFAULT_TESTS),
                    help="source files to mutate (default: %(default)s)")
    ap.add_argument("--tests", nargs="+", default=None,
                    help="test files to run for every mutant (default: per file, see "
                         "DEFAULT_TESTS in this script)")
    ap.add_argument("--match", default=None,
                    help="only the mutants whose id contains this text (e.g. 'losses.py:48:')")
    ap.add_argument("--functions", default=None, metavar="REGEX",
                    help="only the mutants inside a function whose qualified name matches "
                         "(re.search), e.g. 'backward|Dense\\.forward'")
    ap.add_argument("--scope", choices=sorted(SCOPES), default=None,
                    help="only the mutants of a named scope: 'backward' = the forward, cost and "
                         "backward code (no initialisation, validation, training loop or I/O)")
    ap.add_argument("--limit", type=int, default=None, help="run at most this many mutants")
    ap.add_argument("--seed", type=int, default=None,
                    help="shuffle the mutants with this seed before --limit (a random sample)")
    ap.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per mutant (default: 3 x the unmutated run + 30)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the unmutated run (needs --timeout); for quick samples only")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments, one string")
    ap.add_argument("--equivalent", type=Path, default=DEFAULT_EQUIVALENT,
                    help="file of known-equivalent mutant ids (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--fail-under", type=float, default=None,
                    help="exit 1 when the score (percent) is below this")
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    root = args.root.resolve()
    if args.no_baseline and args.timeout is None:
        ap.error("--no-baseline needs --timeout")

    mutants = []
    for f in args.files:
        path = (root / f).resolve()
        if not path.is_file():
            ap.error(f"no such file: {f}")
        mutants += find_mutants(path, root)
    every_id = {m.id for m in mutants}  # before any selection: for the stale-equivalents check
    if args.match:
        mutants = [m for m in mutants if args.match in m.id]
    if args.functions:
        pattern = re.compile(args.functions)
        mutants = [m for m in mutants if pattern.search(m.function)]
    if args.scope:
        mutants = [m for m in mutants if SCOPES[args.scope](m.function)]
    if args.seed is not None:
        random.Random(args.seed).shuffle(mutants)
    if args.limit is not None:
        mutants = mutants[:args.limit]
    equivalent = load_equivalent(args.equivalent)

    def tests_for(m: Mutant) -> list[str]:
        return args.tests or DEFAULT_TESTS.get(m.path) or ap.error(
            f"no default tests for {m.path}: pass --tests")

    if args.list:
        for m in mutants:
            note = f"   [equivalent: {equivalent[m.id]}]" if m.id in equivalent else ""
            print(f"{m.id:70s} {m.kind:9s} {m.function}{note}")
        kinds = {}
        for m in mutants:
            kinds[m.kind] = kinds.get(m.kind, 0) + 1
        print(f"{len(mutants)} mutants: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        return 0

    files = sorted({m.path for m in mutants})
    all_tests = sorted({t for m in mutants for t in tests_for(m)})
    extra = shlex.split(args.pytest_args)
    workdirs = [_make_workdir(root, files, all_tests) for _ in range(max(1, args.jobs))]
    results: list[Result] = []
    t_start = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)  # a kill restores the files like Ctrl-C does
    try:
        _check_imports_copy(workdirs[0], files)
        baseline = {}
        for group in sorted({tuple(tests_for(m)) for m in mutants}):
            if args.no_baseline:
                break
            t0 = time.perf_counter()
            rc, out = _run_pytest(workdirs[0], list(group), 3600, extra)
            baseline[group] = time.perf_counter() - t0
            if rc != 0:
                print(out[-3000:])
                raise SystemExit(f"mutate: the unmutated tests fail ({' '.join(group)}); "
                                 "fix them first")
            print(f"baseline: {' '.join(group)} pass in {baseline[group]:.1f} s")
        todo = [m for m in mutants if m.id not in equivalent]
        for m in mutants:
            if m.id in equivalent:
                results.append(Result(m.id, "equivalent", 0.0, equivalent[m.id]))
        free = list(workdirs)

        def one(m: Mutant) -> Result:
            work = free.pop()
            try:
                group = tuple(tests_for(m))
                timeout = args.timeout or 3 * baseline[group] + 30
                return run_mutant(m, work, list(group), timeout, extra)
            finally:
                free.append(work)

        pool = cf.ThreadPoolExecutor(max_workers=len(workdirs))
        try:
            futures = [pool.submit(one, m) for m in todo]
            for n, fut in enumerate(cf.as_completed(futures), start=1):
                r = fut.result()
                results.append(r)
                print(f"[{n}/{len(todo)}] {r.status:8s} {r.id}  ({r.seconds:.1f} s)", flush=True)
        except KeyboardInterrupt:
            print("\nmutate: interrupted; the results so far:", file=sys.stderr)
            for fut in futures:
                fut.cancel()
            for proc in list(_ACTIVE):  # the running mutants end now; their files are restored
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        for w in workdirs:
            shutil.rmtree(w, ignore_errors=True)
    complete = len(results) == len(mutants)
    score = report(results, mutants, time.perf_counter() - t_start, args.json)
    stale = sorted(k for k in set(equivalent) - every_id
                   if k.split(":")[0] in args.files)
    if complete and stale:
        print(f"warning: {len(stale)} ids in {args.equivalent} match no mutant (the code moved?): "
              + ", ".join(stale))
    if args.fail_under is not None and not score >= args.fail_under:
        return 1
    return 0


def report(results, mutants, seconds, json_path) -> float:
    """Print the survivors and the score; return the score in percent."""
    by = {s: [r for r in results if r.status == s] for s in
          ("killed", "timeout", "survived", "equivalent", "error")}
    ran = len(by["killed"]) + len(by["timeout"]) + len(by["survived"])
    killed = len(by["killed"]) + len(by["timeout"])
    print()
    if by["survived"]:
        print("survivors (file:line:col:original->replacement):")
        for r in sorted(by["survived"], key=lambda r: r.id):
            print(f"  {r.id}")
    for r in by["error"]:
        print(f"error: {r.id}: {r.detail}")
    timed = [r.seconds for r in results if r.status != "equivalent"]
    mean = sum(timed) / len(timed) if timed else 0.0
    score = 100.0 * killed / ran if ran else float("nan")
    print(f"score: {killed}/{ran} non-equivalent mutants killed = {score:.1f}% "
          f"({len(by['timeout'])} by timeout); {len(by['equivalent'])} listed equivalent; "
          f"{len(by['error'])} errors; {len(results)} of {len(mutants)} mutants; {seconds:.0f} s "
          f"({mean:.1f} s per mutant)")
    if json_path:
        json_path.write_text(json.dumps({"score": score, "killed": killed, "ran": ran,
                                         "results": [asdict(r) for r in results]}, indent=1))
    return score


if __name__ == "__main__":
    sys.exit(main())
