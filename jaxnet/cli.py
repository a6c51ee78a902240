"""The `jaxnet` command: it only wires the library together (`data` and `text` load, `MLP` and
`models` build, `check_gradients` verifies, `fit` trains, `save`/`load_checkpoint` store,
`plot_history` draws, `text.sample` writes).
A bad flag or value is one ``jaxnet: error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

from . import (
    __version__,
    activations,
    cli_runs,
    data,
    distributed,
    initializers,
    losses,
    models,
    text,
)
from .checkpoint import CheckpointError, load_checkpoint, save
from .gradcheck import MEMORY_BUDGET, CheckMemoryError, check_gradients
from .layercheck import GradientCheckWarning
from .metrics import accuracy, is_classifier, mse, r2
from .network import MLP
from .plotting import plot_history
from .training import GRADIENTS, OPTIMIZERS, DivergenceWarning, fit

# Synthetic data sets have a fixed size, so that a seed names exactly one data set.
SYNTHETIC = {
    "xor": lambda key: data.xor(key=key, m=400, noise=0.15),
    "moons": lambda key: data.two_moons(key=key, m=400, noise=0.1),
    "spirals": lambda key: data.spirals(key=key, m=600, noise=0.2),
    "blobs": lambda key: data.blobs(key=key, m=400),
}
DATASETS = (*data.DATASETS, *SYNTHETIC, "text")
MODELS = ("mlp", "cnn", "lstm", "transformer")
TEXT_MODELS = ("lstm", "transformer")
TEXT_WINDOWS, TEXT_VAL_WINDOWS = 8192, 512  # training / held-out windows drawn from --seed
NAMES = tuple(sorted([*activations.ACTIVATIONS, *activations.ALIASES]))
OUTPUTS = {"multiclass": "softmax", "binary": "sigmoid", "regression": "identity"}
# The quick check `train` runs first: few examples and finite-difference entries per leaf
# keep it within seconds for every --model (docs/verification.md, "Memory and time of the
# check"); manual ~ autodiff is still compared at every entry.
GRADCHECK_EXAMPLES, GRADCHECK_ENTRIES = 4, 4
# `gradcheck` checks 32 examples, and every entry of a model up to this many parameters.
GRADCHECK_ALL_ENTRIES = 10_000
# --steps and --batch-size when not given: the digits CNN in minibatches (under a minute on
# two idle cores, >= 98% test accuracy), text models in batches of 32 windows of 64 characters
DEFAULT_STEPS = {"mlp": 1000, "cnn": 800, "lstm": 1000, "transformer": 1000}
DEFAULT_BATCH = {"mlp": None, "cnn": 128, "lstm": 32, "transformer": 32}
DESCRIPTION = """Feed-forward networks in JAX: train, check gradients, evaluate.

examples:
  jaxnet train                       # digits, 64 -> 64 (relu) -> 10 (softmax), Adam
  jaxnet train --dataset moons --hidden-sizes 16,16 --hidden tanh --steps 3000
  jaxnet gradcheck --dataset iris    # hand-written backprop vs jax.grad vs finite differences
  jaxnet train --model cnn           # the digits CNN (conv, max-pool, conv, max-pool, dense)
  jaxnet train --model transformer --steps 2000 --out run   # a character model of Python's help
  jaxnet sample run/model.npz --prompt "The for statement"  # text from that model
  jaxnet evaluate jaxnet-out/digits-YYYYmmdd-HHMMSS/model.npz
"""
REASONS = {
    "steps": "reached --steps",
    "converged_cost": "converged (|J_t - J_t-1| < --tol)",
    "converged_params": "converged (parameters stopped changing)",
    "diverged": "DIVERGED: the cost became non-finite; kept the last finite parameters "
                "(try a smaller --learning-rate)",
    "gradient_check_failed": "GRADIENT CHECK FAILED (--check-every): the hand-written gradient "
                             "is wrong at these parameters; kept them (report below)",
    "early_stopped": "early stopping (the test cost did not improve for --patience "
                     "evaluations; kept the parameters of its best, step {best_step})",
    "interrupted": "interrupted",
}


# --- argument types: each turns bad text into one clear argparse error ---------------------
def _number(kind, least, strict, below=math.inf):
    what = "an integer" if kind is int else "a finite number"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > least if strict else value >= least) or not value < below:
            limits = f"{'>' if strict else '>='} {least}" + (f" and < {below}" if below < math.inf else "")
            raise argparse.ArgumentTypeError(f"must be {what} {limits}, got {text!r}")
        return value
    return parse


positive_int, positive_float = _number(int, 0, True), _number(float, 0, True)
nonneg_float, seed = _number(float, 0, False), _number(int, 0, False, below=2**32)


UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
         "gib": 2**30}


def memory_size(text: str) -> int:
    """``"2GiB"`` -> 2147483648; also ``512MiB``, ``1.5GB``, ``800MB``, or plain bytes."""
    body = text.strip().lower()
    unit = next((u for u in sorted(UNITS, key=len, reverse=True) if u and body.endswith(u)), "")
    try:
        value = float(body[:len(body) - len(unit)].strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value * UNITS[unit] >= 1):
        raise argparse.ArgumentTypeError(
            f"expected a memory size such as 2GiB, 512MiB, 800MB or a number of bytes, got "
            f"{text!r}")
    return int(value * UNITS[unit])


def layer_sizes(text: str) -> tuple[int, ...]:
    """``"64,32"`` -> ``(64, 32)``; ``""`` -> ``()`` (no hidden layer: a perceptron)."""
    if not text.strip():
        return ()
    try:
        return tuple(positive_int(part.strip()) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of positive integers such as 64,32 (or '' for none), "
            f"got {text!r}") from None


def hidden_activations(text: str) -> str | tuple[str, ...]:
    """One name for every hidden layer, or a comma list with one name per hidden layer."""
    try:
        names = tuple(activations.canonical_name(part.strip()) for part in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return names[0] if len(names) == 1 else names


# --- the pieces the commands share ---------------------------------------------------------
def _keys(seed: int) -> dict:
    """Every random choice of a run, drawn from its one --seed."""
    names = ("data", "split", "init", "batch", "check")
    return dict(zip(names, jax.random.split(jax.random.key(seed), len(names))))


def load_text(seed: int, T: int) -> data.Dataset:
    """Windows of `T` characters of Python's help texts: ids `(T, m)`, next-character targets
    `(T, m)`; training windows from the first 90% of the text, test windows from the rest."""
    corpus = text.load_corpus()
    k_train, k_val = jax.random.split(_keys(seed)["data"])
    X, Y = text.windows(corpus.train, T, TEXT_WINDOWS, key=k_train)
    X_val, Y_val = text.windows(corpus.val, T, TEXT_VAL_WINDOWS, key=k_val)
    return data.Dataset("text", "text", X, Y, X_val, Y_val, corpus.V, None, None,
                        tuple(corpus.vocab), None, None)


def load_dataset(name: str, seed: int, T: int = 64) -> data.Dataset:
    """The data set `name`, split 80/20 (and standardized) as the seed decides."""
    if name == "text":
        return load_text(seed, T)
    keys = _keys(seed)
    if name in data.DATASETS:
        return data.load(name, key=keys["split"])
    X, Y = SYNTHETIC[name](keys["data"])
    X_train, Y_train, X_test, Y_test = data.train_test_split(X, Y, key=keys["split"])
    X_train, X_test, mean, std = data.standardize(X_train, X_test)
    binary = Y.shape[0] == 1  # labels on the host: no compilation for a field the CLI ignores
    labels = (lambda Y: np.asarray(Y[0], np.int32)) if binary else (lambda Y: np.argmax(Y, 0))
    return data.Dataset(name, "binary" if binary else "multiclass", X_train, Y_train, X_test,
                        Y_test, 2 if binary else Y.shape[0], labels(Y_train), labels(Y_test),
                        tuple(f"x{i + 1}" for i in range(X.shape[0])), mean, std)


def as_images(ds: data.Dataset, scale: float = 1.0) -> data.Dataset:
    """Digits' 64 features (times `scale`) as `(1, 8, 8, m)` images (row-major pixels, as
    scikit-learn's)."""
    image = lambda X: (X * scale).reshape(1, 8, 8, X.shape[-1])
    return dataclasses.replace(ds, X_train=image(ds.X_train), X_test=image(ds.X_test))


def digit_images(seed: int) -> data.Dataset:
    """The CNN's input: digits as `(1, 8, 8, m)` images of pixel intensity / 16 (in [0, 1]),
    split as `load_dataset` splits them.  Per-pixel standardization (the MLP's input) costs the
    CNN about 1% of test accuracy (experiment 11: 97.7% against 98.8%)."""
    ds = data.load("digits", key=_keys(seed)["split"], standardize=False)
    return as_images(ds, 1 / 16)


def build(args, ds: data.Dataset):
    """The network `--model` names, sized for the data set."""
    model = args.model
    if (model in TEXT_MODELS) != (ds.name == "text"):
        raise ValueError(f"--model {model} needs --dataset text" if model in TEXT_MODELS else
                         f"--dataset text needs --model lstm or transformer, got {model}")
    if model == "cnn":
        if ds.name != "digits":
            raise ValueError(f"--model cnn is the 8x8 digits CNN: use --dataset digits, "
                             f"got {ds.name}")
        return models.digits_cnn()
    if model == "lstm":
        return models.char_lstm(ds.n_classes, args.seq_len, hidden=args.width)
    if model == "transformer":
        return models.char_transformer(ds.n_classes, args.seq_len, d=args.width,
                                       heads=args.heads, blocks=args.blocks)
    sizes = (ds.X_train.shape[0], *args.hidden_sizes, ds.Y_train.shape[0])
    return MLP(sizes, hidden=args.hidden, output=args.output or OUTPUTS[ds.task], loss=args.loss)


def setup(args):
    """`(keys, data set, network, initial parameters)` from the flags; prints what they are."""
    keys = _keys(args.seed)
    ds = digit_images(args.seed) if args.model == "cnn" and args.dataset == "digits" else \
        load_dataset(args.dataset, args.seed, args.seq_len)
    net = build(args, ds)
    params = net.init(keys["init"], method=args.init) if isinstance(net, MLP) \
        else net.init(keys["init"])
    print(describe(ds, net, params), flush=True)
    return keys, ds, net, params


def architecture(net) -> str:
    """``64 -> 64 (relu) -> 10 (softmax)``, or the layers of a `Sequential`."""
    if not isinstance(net, MLP):
        shape = lambda s: "x".join(map(str, s))
        return " -> ".join([shape(net.input_shape)] + [
            f"{type(layer).__name__}{'(' + layer.activation + ')' if hasattr(layer, 'activation') else ''} {shape(out)}"
            for layer, out in zip(net.layers, net.shapes[1:])])
    return " -> ".join([str(net.sizes[0])] + [f"{n} ({g})" for n, g in
                                              zip(net.sizes[1:], net.activations)])


def describe(ds: data.Dataset, net, params) -> str:
    kind = f"{ds.n_classes} classes" if ds.n_classes else ds.task
    n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
    m_train, m_test = ds.X_train.shape[-1], ds.X_test.shape[-1]
    what = "windows of characters" if ds.name == "text" else "examples"
    shape = "x".join(map(str, ds.X_train.shape[:-1]))
    return (f"{ds.name} ({kind}): {m_train} train + {m_test} test {what}, {shape} "
            f"{'ids' if ds.name == 'text' else 'features'}; network {architecture(net)}, "
            f"{net.loss} loss, {n_params:,} parameters")


def scores(net: MLP, params, X, Y) -> dict:
    out = {"cost": float(net.cost(params, X, Y))}
    if is_classifier(net):
        out["accuracy"] = accuracy(net, params, X, Y)
    if jax.numpy.issubdtype(Y.dtype, jax.numpy.integer) and Y.ndim == 2:  # next-character ids
        out["bits_per_char"] = text.bits_per_char(out["cost"])
    else:
        out.update(r2=r2(net, params, X, Y), mse=mse(net, params, X, Y))
    return out


def show(s: dict) -> str:
    if "bits_per_char" in s:
        return (f"bits/char {s['bits_per_char']:.3f}  accuracy {100 * s['accuracy']:.2f}%  "
                f"cost {s['cost']:.4g}")
    if "accuracy" in s:
        return f"accuracy {100 * s['accuracy']:.2f}%  cost {s['cost']:.4g}"
    return f"R² {s['r2']:.4f}  MSE {s['mse']:.4g}  cost {s['cost']:.4g}"


def gradient_check(net, params, ds, examples, entries, key, memory_budget=None, **options):
    """`check_gradients` on the first `examples` training examples (`options`: its others, e.g.
    ``per_layer``); an out-of-memory is a `CheckMemoryError` that names the flags to lower."""
    m = min(examples, ds.X_train.shape[-1])
    try:
        return check_gradients(net, params, ds.X_train[..., :m], ds.Y_train[..., :m],
                               entries=entries, key=key, memory_budget=memory_budget,
                               **options)
    except CheckMemoryError as err:
        raise CheckMemoryError(
            f"the gradient check ran out of memory ({_first_line(err.__cause__ or err)}); "
            f"lower --examples "
            f"(now {m}), --entries (now {entries or 'all'}) or --check-memory (now "
            f"{memory_budget or MEMORY_BUDGET:,} bytes), or skip it with --no-gradcheck "
            "(train)") from err


def _first_line(err) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "")


def summary(report, seconds=None) -> str:
    """The report in one line: its verdict, the worst error of each comparison and, given
    `seconds`, how long the check took."""
    worst = {attr: max((e for leaf in report.leaves if not math.isnan(e := getattr(leaf, attr))),
                       default=math.nan) for attr in ("manual_vs_autodiff", "autodiff_vs_fd")}
    order = "n/a" if report.taylor is None else f"{report.taylor.order:.2f}"
    took = "" if seconds is None else f", {seconds:.1f} s"
    return (f"gradient check: {'ok' if report.ok else 'FAILED'} (manual~autodiff "
            f"{worst['manual_vs_autodiff']:.0e}, autodiff~FD {worst['autodiff_vs_fd']:.0e}, "
            f"Taylor order {order}{took})")


# --- the commands --------------------------------------------------------------------------
def cmd_train(args) -> int:
    with cli_runs.Guard() as guard:
        return _train(args, guard)


def _train(args, guard) -> int:
    start = time.perf_counter()
    mesh = _join(args)  # several processes: before any JAX work
    guard.phase = "loading the data"
    resume = cli_runs.resume_args(args, args.given) if args.resume is not None else None
    if args.steps is None:
        args.steps = DEFAULT_STEPS[args.model]
    if args.batch_size is None and not args.full_batch:
        args.batch_size = DEFAULT_BATCH[args.model]
    keys, ds, net, params = setup(args)
    if resume is not None:
        stored = load_checkpoint(resume).net
        if stored != net:
            raise ValueError(f"--resume: {resume} holds {architecture(stored)}, but the run's "
                             f"settings build {architecture(net)}")
    if not args.no_gradcheck:
        guard.phase = "the gradient check"
        check_start = time.perf_counter()
        report = gradient_check(net, params, ds, args.examples, args.entries, keys["check"],
                                args.check_memory, per_layer="on_failure")  # layers if it fails
        print(summary(report, time.perf_counter() - check_start), flush=True)
        if not report.ok:
            print(report)
            return 1
    guard.phase = "the start of training"
    batch = "full batch" if args.batch_size is None else f"batches of {args.batch_size}"
    print(f"training: {args.optimizer}, learning rate {args.learning_rate:g}, up to {args.steps} "
          f"steps, {batch}, {args.gradients} gradients"
          + (f", resumed from {resume}" if resume else ""), flush=True)
    out = Path(args.out or f"jaxnet-out/{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.model == "cnn":  # for `evaluate` of a checkpoint written during the run
        args.images = "pixels/16"
    recorded = cli_runs.record(args)
    if resume is None and distributed.is_writer():  # a run killed before its end can be
        _write_json(out / "metrics.json", {"args": recorded, "stopped": "running"})  # resumed
    guard.defer()  # from here on a signal lets the run write its results first
    fit_start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # reported below as the stop reason
        warnings.simplefilter("ignore", GradientCheckWarning)  # likewise, with its report
        X, Y = (ds.X_train, ds.Y_train) if mesh is None else _shard(mesh, ds)
        params, history = fit(net, params, X, Y, steps=args.steps,
                              learning_rate=args.learning_rate, optimizer=args.optimizer,
                              gradients=args.gradients, batch_size=args.batch_size,
                              key=keys["batch"], tol=args.tol, clip_norm=args.clip_norm,
                              validation=(ds.X_test, ds.Y_test), progress=not args.quiet,
                              resume=resume, checkpoint=out / "model.npz",
                              checkpoint_every=args.checkpoint_every, keep=args.keep,
                              patience=args.patience, check_every=args.check_every, mesh=mesh)
    params = distributed.to_host(params)  # replicated on every process: score them locally
    fit_s = time.perf_counter() - fit_start
    check_failed = history.pop("gradient_check", None)  # a report: printed, not saved
    signal_name = (history.get("signal") or guard.signal or "SIGINT") \
        if history["stopped"] == "interrupted" else guard.signal
    if signal_name is None:
        train = scores(net, params, ds.X_train, ds.Y_train)
        test = scores(net, params, ds.X_test, ds.Y_test)
        print(f"train: {show(train)}\ntest:  {show(test)}")
        print(f"stopped after {history['steps_run']} steps: "
              f"{REASONS[history['stopped']].format(best_step=history.get('best_step'))}")
    if check_failed is not None:
        print(check_failed)

    # what `evaluate` and `sample` need to rebuild the data
    history.update(dataset=args.dataset, seed=args.seed, model=args.model, seq_len=args.seq_len)
    if args.model == "cnn":
        history.update(images="pixels/16")
    if ds.name == "text":
        history.update(vocab="".join(ds.feature_names))
    save(out / "model.npz", net, params, history=history)  # process 0 writes, the others wait
    if distributed.is_writer():
        plot_history(history, out / "cost.png", title=f"{args.dataset}: {architecture(net)}")
    wall_s = time.perf_counter() - start
    metrics = {k: getattr(args, k) for k in ("dataset", "seed", "optimizer", "learning_rate",
                                             "steps", "batch_size", "gradients")}
    if isinstance(net, MLP):
        metrics.update(sizes=list(net.sizes), activations=list(net.activations))
    metrics.update(task=ds.task, model=args.model, architecture=architecture(net),
                   loss=net.loss, steps_run=int(history["steps_run"]),
                   stopped="interrupted" if signal_name else history["stopped"])
    if signal_name is None:
        metrics.update(train=train, test=test)
    if "best_step" in history:
        metrics.update(best_step=int(history["best_step"]))
    metrics.update(train_seconds=fit_s, wall_seconds=wall_s, args=recorded)
    if distributed.is_writer():
        _write_json(out / "metrics.json", metrics)
    distributed.barrier("jaxnet.train.outputs")
    if signal_name is not None:
        print(f"interrupted at step {int(history['steps_run'])} of {args.steps}; resume with: "
              f"jaxnet train --resume {out}", file=sys.stderr, flush=True)
        return cli_runs.exit_status(signal_name)
    print(f"wall time {wall_s:.1f} s (training {fit_s:.1f} s)")
    if distributed.is_writer():
        print(f"wrote {out}/model.npz, cost.png, metrics.json")
    return 0 if check_failed is None else 1


def _write_json(path: Path, obj) -> None:
    """`obj` as JSON at `path`, atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


# --- several processes (jaxnet.distributed) -------------------------------------------------
def _distributed_args(p) -> None:
    g = p.add_argument_group("several processes (one per host; see docs/scaling.md)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address (default: $JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=positive_int, metavar="N",
                   help="processes in the job (default: $JAX_NUM_PROCESSES); with N >= 1 the "
                        "training columns are sharded over the devices of all processes")
    g.add_argument("--process-id", type=_number(int, 0, False), metavar="I",
                   help="this process's index in [0, N) (default: $JAX_PROCESS_ID)")
    g.add_argument("--heartbeat-timeout", type=positive_int, metavar="SECONDS",
                   default=distributed.HEARTBEAT_TIMEOUT,
                   help="a process silent this long counts as dead: the others exit with an "
                        "error")
    g.add_argument("--init-timeout", type=positive_int, metavar="SECONDS",
                   default=distributed.INIT_TIMEOUT,
                   help="how long to wait for every process to join")


def _join(args):
    """The mesh over every process's devices when several processes are configured (flags or
    JAX's environment variables), after joining them; None for a plain one-process run."""
    n = args.num_processes if args.num_processes is not None else \
        distributed._env_int("JAX_NUM_PROCESSES")
    if n != 1:  # N = 1: the same sharded path on this process's devices, nothing to join
        given = distributed.settings(args.coordinator, args.num_processes, args.process_id)
        if given is None:
            return None
        distributed.initialize(*given, init_timeout=args.init_timeout,
                               heartbeat_timeout=args.heartbeat_timeout)
    from .parallel import data_mesh

    mesh = data_mesh()
    print(f"process {jax.process_index()} of {jax.process_count()}: {mesh.size} devices "
          f"({jax.local_device_count()} here), training columns sharded over all", flush=True)
    return mesh


def _shard(mesh, ds):
    """This process's block of the training columns, made global (`data.global_batch`); the
    last m mod (devices) columns are left out so that every device holds as many."""
    m, n, P, i = ds.X_train.shape[-1], mesh.size, jax.process_count(), jax.process_index()
    keep = m - m % n
    if keep < m:
        print(f"using {keep} of the {m} training columns: a multiple of the {n} devices",
              flush=True)
    lo, hi = i * keep // P, (i + 1) * keep // P
    return data.global_batch(mesh, np.asarray(ds.X_train)[..., lo:hi],
                             np.asarray(ds.Y_train)[..., lo:hi])


def cmd_gradcheck(args) -> int:
    keys, ds, net, params = setup(args)
    entries = args.entries
    if entries is None and sum(p.size for p in jax.tree.leaves(params)) > GRADCHECK_ALL_ENTRIES:
        entries = 16
    check_start = time.perf_counter()
    report = gradient_check(net, params, ds, args.examples, entries, keys["check"],
                            args.check_memory)
    print(report)
    print(f"checked in {time.perf_counter() - check_start:.1f} s")
    return 0 if report.ok else 1


def import_layers(modules) -> None:
    """Make layers of the user's own loadable: the current directory joins the module search
    path (after the installed packages), so a checkpoint's recorded module is found there, and
    each ``--import`` module is imported (it registers its layers with jn.layers.register)."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for name in modules or ():
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 -- the user's module: one line, no traceback
            raise ValueError(f"--import {name}: cannot import it ({type(err).__name__}: "
                             f"{err})") from None


def cmd_evaluate(args) -> int:
    import_layers(args.imports)
    net, params, history, _ = load_checkpoint(args.checkpoint)
    recorded = {**cli_runs.read_run_record(args.checkpoint), **(history or {})}
    name = args.dataset or recorded.get("dataset")
    if name not in DATASETS:
        raise ValueError(f"{args.checkpoint} records no data set jaxnet knows ({name!r}); pass "
                         f"--dataset, one of {', '.join(DATASETS)}")
    seed = args.seed if args.seed is not None else int(recorded.get("seed", 0))
    T = net.input_shape[0] if name == "text" else 64
    ds = load_dataset(name, seed, T)
    if name == "digits" and len(net.input_shape) == 3:  # older runs: standardized pixels
        ds = digit_images(seed) if recorded.get("images") == "pixels/16" else as_images(ds)
    x_shape, y_shape = tuple(ds.X_test.shape[:-1]), tuple(ds.Y_test.shape[:-1])
    want_y = y_shape if name != "text" else (ds.n_classes, *y_shape)
    if isinstance(net, MLP) and (net.sizes[0], net.sizes[-1]) != (x_shape[0], y_shape[0]):
        raise ValueError(f"{args.checkpoint} maps {net.sizes[0]} inputs to {net.sizes[-1]} "
                         f"outputs, but {name} has {x_shape[0]} features and {y_shape[0]} "
                         "targets")
    if (tuple(net.input_shape), tuple(net.output_shape)) != (x_shape, want_y):
        raise ValueError(f"{args.checkpoint} maps inputs {net.input_shape} to outputs "
                         f"{net.output_shape}, but {name} has inputs {x_shape} and targets "
                         f"{want_y}")
    print(f"{args.checkpoint}: network {architecture(net)}, {net.loss} loss")
    print(f"{name} test split (seed {seed}, {ds.X_test.shape[-1]} examples): "
          f"{show(scores(net, params, ds.X_test, ds.Y_test))}")
    return 0


def cmd_sample(args) -> int:
    import_layers(args.imports)
    net, params, history, _ = load_checkpoint(args.checkpoint)
    recorded = history or {}
    if recorded.get("dataset") != "text" or "vocab" not in recorded:
        raise ValueError(f"{args.checkpoint} is not a character model (train one with "
                         "'jaxnet train --model lstm|transformer --dataset text')")
    vocab = str(recorded["vocab"])
    corpus = text.Corpus(np.zeros(0, np.int32), np.zeros(0, np.int32), vocab)
    out = text.sample(net, params, corpus, args.prompt, args.length,
                      key=jax.random.key(args.seed), temperature=args.temperature)
    print(out)
    return 0


# --- the parser ----------------------------------------------------------------------------
class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):  # no "(default: None)" or "(default: False)" noise
        quiet = action.default is None or action.default is False
        return action.help if quiet else super()._get_help_string(action)


class _RawFormatter(_Formatter, argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block, same prefix for every subcommand
        self.exit(2, f"jaxnet: error: {one_line(message)} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):
        # argparse reports a subcommand's unknown flags from the top parser ("see 'jaxnet
        # --help'"); the subcommand's own help is the one that lists the valid flags.
        args, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(args, "command", None)
            parser = self._commands.get(command, self) if hasattr(self, "_commands") else self
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args


def one_line(message) -> str:
    return " ".join(str(message).split())


def _import_arg(p) -> None:
    p.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   help="import this module first (repeatable): one that registers your own "
                        "layers with jn.layers.register, when the module the checkpoint "
                        "records cannot be imported (a class defined in a script)")


def _model_args(p) -> None:
    p.add_argument("--model", choices=MODELS, default="mlp",
                   help="mlp: the flags below; cnn: the digits CNN; lstm / transformer: a "
                        "character model of Python's help texts (with --dataset text)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="scikit-learn data set, a synthetic one generated from --seed, or "
                        "'text' (default: digits; text for lstm and transformer)")
    p.add_argument("--seq-len", type=positive_int, default=64,
                   help="characters per window (lstm, transformer)")
    p.add_argument("--width", type=positive_int, default=128,
                   help="LSTM units, or the transformer's model width d")
    p.add_argument("--heads", type=positive_int, default=4, help="attention heads (transformer)")
    p.add_argument("--blocks", type=positive_int, default=2,
                   help="transformer blocks (transformer)")
    p.add_argument("--hidden-sizes", type=layer_sizes, default="64", metavar="N,N,...",
                   help="widths of the hidden layers; '' for none (a perceptron)")
    p.add_argument("--hidden", type=hidden_activations, default="relu", metavar="NAME[,NAME...]",
                   help=f"hidden activation, or one per hidden layer; one of {', '.join(NAMES)}")
    p.add_argument("--output", choices=NAMES, metavar="NAME",
                   help="output activation (default: softmax for multiclass, sigmoid for "
                        "binary, identity for regression data)")
    p.add_argument("--loss", choices=tuple(losses.LOSSES), metavar="NAME",
                   help=f"loss, one of {', '.join(losses.LOSSES)} (default: the output's pair)")
    p.add_argument("--init", choices=sorted(initializers.INITIALIZERS),
                   help="weight initializer (default: he for relu layers, glorot otherwise)")
    p.add_argument("--seed", type=seed, default=0,
                   help="seeds the data, the split, the initial weights and the batches")


def _check_args(p, examples, entries, what, entries_default="") -> None:
    p.add_argument("--examples", type=positive_int, default=examples,
                   help=f"{what}training examples (windows, for text) the cost is taken over")
    p.add_argument("--entries", type=positive_int, default=entries,
                   help=f"{what}finite-difference entries per parameter leaf, chosen at random; "
                        f"hand-written ~ autodiff is compared at every entry {entries_default}"
                        .rstrip())
    p.add_argument("--check-memory", type=memory_size, default=None, metavar="SIZE",
                   help=f"{what}memory one batch of loss evaluations may use, e.g. 512MiB, 1GB "
                        f"(default: {MEMORY_BUDGET // 2**30}GiB); the batch size follows from it")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxnet", formatter_class=_RawFormatter, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"jaxnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", formatter_class=_Formatter, help="train a network",
                       description="Check the network's hand-written gradients, train it on the "
                       "training split with them (the test split is the validation set), report "
                       "the metrics and write model.npz, cost.png and metrics.json. Ctrl-C (or "
                       "SIGTERM) stops at the next chunk of steps, writes them (model.npz is "
                       "resumable: --resume DIR) and exits 130 (143).")
    _model_args(p)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="update rule")
    p.add_argument("--learning-rate", type=positive_float, default=3e-3, help="step size α")
    p.add_argument("--steps", type=positive_int,
                   help="the run's total updates (default: "
                        + ", ".join(f"{m} {n}" for m, n in DEFAULT_STEPS.items()) + ")")
    p.add_argument("--batch-size", type=positive_int,
                   help="minibatch size (default: full batch for mlp, "
                        + ", ".join(f"{n} for {m}" for m, n in DEFAULT_BATCH.items() if n) + ")")
    p.add_argument("--full-batch", action="store_true",
                   help="every step on the whole training split (overrides the model's default "
                        "batch size)")
    p.add_argument("--gradients", choices=GRADIENTS, default="manual",
                   help="the hand-written backward pass (checked before the run), or jax.grad "
                        "(autodiff: for comparison)")
    p.add_argument("--tol", type=nonneg_float, help="stop once |J_t - J_t-1| < tol")
    p.add_argument("--clip-norm", type=positive_float,
                   help="clip each step's gradients to this global norm")
    p.add_argument("--patience", type=positive_int, metavar="P",
                   help="stop early when the test cost has not improved for P evaluations, and "
                        "keep the best parameters (the test split doubles as the validation "
                        "set, so its figures are then optimistic)")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                   help="also write a resumable DIR/model.npz every N steps (it is always "
                        "written at the end and on Ctrl-C / SIGTERM)")
    p.add_argument("--keep", type=_number(int, 0, False), default=0, metavar="K",
                   help="keep the K newest checkpoints beside model.npz as "
                        "model.step-NNNNNNNN.npz")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue a run (its folder or its model.npz) to --steps in total, with "
                        "the settings in its metrics.json; it writes into that folder unless "
                        "--out is given")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default: jaxnet-out/DATASET-YYYYmmdd-HHMMSS)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-gradcheck", action="store_true", help="skip the gradient check")
    p.add_argument("--check-every", type=positive_int, metavar="N",
                   help="with --gradients manual: re-check the hand-written gradient every N "
                        "steps; stop with the report if it fails")
    _check_args(p, GRADCHECK_EXAMPLES, GRADCHECK_ENTRIES, "the gradient check before training: ")
    _distributed_args(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("gradcheck", formatter_class=_Formatter, help="check gradients",
                       description="Compare the hand-written backward pass with jax.grad and "
                       "with central finite differences (float64) for a freshly initialized "
                       "network, and print the table. Exit status 0 when they agree, 1 if not.")
    _model_args(p)
    _check_args(p, 32, None, "", f"(default: all when the model has at most "
                f"{GRADCHECK_ALL_ENTRIES:,} parameters, else 16)")
    p.set_defaults(run=cmd_gradcheck)

    p = sub.add_parser("evaluate", formatter_class=_Formatter, help="evaluate a checkpoint",
                       description="Report the test-split accuracy (R² and MSE for regression) "
                       "and cost of a checkpoint written by 'jaxnet train'.")
    p.add_argument("checkpoint", type=Path, help="a model.npz file")
    p.add_argument("--dataset", choices=DATASETS,
                   help="data set (default: the one recorded in the checkpoint)")
    p.add_argument("--seed", type=seed,
                   help="seed of the split (default: the one recorded in the checkpoint)")
    _import_arg(p)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("sample", formatter_class=_Formatter, help="write text with a model",
                       description="Continue a prompt, one character at a time, with a "
                       "character model written by 'jaxnet train --model lstm|transformer'.")
    p.add_argument("checkpoint", type=Path, help="a model.npz file of a character model")
    p.add_argument("--prompt", default="The ", help="the text to continue")
    p.add_argument("--length", type=positive_int, default=200, help="characters to add")
    p.add_argument("--temperature", type=positive_float, default=0.8,
                   help="below 1: likelier characters; above 1: more varied")
    p.add_argument("--seed", type=seed, default=0, help="seeds the draws")
    _import_arg(p)
    p.set_defaults(run=cmd_sample)
    parser._commands = sub.choices  # {"train": its parser, ...}: for errors about their flags
    return parser


def main(argv=None) -> int:
    """Run the `jaxnet` command with `argv` (default `sys.argv[1:]`); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    if args.command == "train":  # which flags --resume may not take from the run's record
        args.given = cli_runs.given_flags(build_parser(), argv)
    if getattr(args, "model", None) is not None and args.dataset is None:
        args.dataset = "text" if args.model in TEXT_MODELS else "digits"
    try:
        return args.run(args)
    except KeyboardInterrupt:  # a second Ctrl-C while training: stop at once
        print("jaxnet: aborted", file=sys.stderr)
        return 130
    except (CheckpointError, CheckMemoryError, ValueError, TypeError, OSError,
            ImportError) as err:
        if isinstance(err, OSError) and err.filename is not None:
            err = f"{err.strerror}: {err.filename}"
        print(f"jaxnet: error: {one_line(err)}", file=sys.stderr)
        return 2
