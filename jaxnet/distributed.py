"""Several processes (hosts) on JAX's multi-controller runtime, with bounded waits.

One process per host runs the same script.  `initialize` joins them (from arguments or from
environment variables a cluster launcher sets); after it, ``jax.devices()`` lists the devices of
every process, `jaxnet.data_mesh()` spans them all, and ``fit(..., mesh=mesh)`` trains
data-parallel across the hosts: the gradient all-reduce is the only traffic per step.

* `global_batch(mesh, X_local, Y_local)`: each process's own columns -> one global `(X, Y)`
  whose columns are process 0's, then process 1's, ... (what one process holding everything
  would pass), sharded over the mesh axis ``"data"``.
* `is_writer()`: process 0, the one that writes files (checkpoints, plots, metrics) and draws
  progress bars; `barrier(name)` makes the others wait until it has written, so a later `load`
  never races a write.

Faults: every wait is bounded.  Joining waits at most `init_timeout` seconds for the other
processes (JAX's default: 300 s); once joined, a process that stops sending heartbeats for
`heartbeat_timeout` seconds (JAX's default: 100 s) is declared dead by the coordinator and every
other process is terminated with an error instead of waiting forever in a collective.  jaxnet's
defaults are tens of seconds (`INIT_TIMEOUT`, `HEARTBEAT_TIMEOUT`).
"""

from __future__ import annotations

import os

import jax
import numpy as np

INIT_TIMEOUT = 60  # s: how long a process waits for all the others to join
HEARTBEAT_TIMEOUT = 30  # s: a process silent this long is dead; the others stop with an error
ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _env_int(name):
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") \
            from None


def _check_address(coordinator) -> str:
    if not isinstance(coordinator, str):
        raise TypeError(f"coordinator must be a string 'HOST:PORT', got "
                        f"{type(coordinator).__name__}")
    host, sep, port = coordinator.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"coordinator must be 'HOST:PORT' with a port in [1, 65535], got "
                         f"{coordinator!r}")
    return coordinator


def _count(name, value, least):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def settings(coordinator=None, num_processes=None, process_id=None):
    """`(coordinator, num_processes, process_id)` from the arguments, else from the environment
    (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``); `None` when
    none of the three is set anywhere (a single process).  A partial set is a ValueError."""
    coordinator = coordinator if coordinator is not None else \
        os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    given = (coordinator, num_processes, process_id)
    if all(v is None for v in given):
        return None
    missing = [name for name, v in zip(("coordinator (JAX_COORDINATOR_ADDRESS)",
                                        "num_processes (JAX_NUM_PROCESSES)",
                                        "process_id (JAX_PROCESS_ID)"), given) if v is None]
    if missing:
        raise ValueError(f"several processes need a coordinator, the number of processes and "
                         f"this process's id; missing: {', '.join(missing)}")
    n = _count("num_processes", num_processes, 1)
    i = _count("process_id", process_id, 0)
    if i >= n:
        raise ValueError(f"process_id must lie in [0, num_processes) = [0, {n}), got {i}")
    return _check_address(coordinator), n, i


def initialize(coordinator=None, num_processes=None, process_id=None, *,
               init_timeout: int = INIT_TIMEOUT, heartbeat_timeout: int = HEARTBEAT_TIMEOUT,
               local_device_ids=None) -> bool:
    """Join this process to the others (``jax.distributed.initialize``), before any JAX work.

    Arguments:
        coordinator: ``"HOST:PORT"`` of process 0 (it listens there); default
            ``$JAX_COORDINATOR_ADDRESS``.
        num_processes, process_id: the job's size N and this process's index in [0, N);
            default ``$JAX_NUM_PROCESSES`` and ``$JAX_PROCESS_ID`` (with SLURM:
            ``$SLURM_NTASKS``, ``$SLURM_PROCID``; a Kubernetes indexed job:
            ``$JOB_COMPLETION_INDEX``).
        init_timeout: seconds to wait for all N processes to join before failing.
        heartbeat_timeout: seconds without a heartbeat after which a process counts as dead and
            the others exit with an error.
        local_device_ids: the local devices this process uses (default: all; one GPU per
            process: its local rank).

    Returns:
        True when it joined N > 1 processes; False when nothing is configured or N = 1 (one
        process: nothing to join; JAX is left as it is).

    On CPU the collectives go over TCP (Gloo); on GPUs JAX uses NCCL.
    """
    given = settings(coordinator, num_processes, process_id)
    init_timeout = _count("init_timeout", init_timeout, 1)
    heartbeat_timeout = _count("heartbeat_timeout", heartbeat_timeout, 1)
    if given is None or given[1] == 1:
        return False
    coordinator, n, i = given
    # Without it, a computation across the CPU devices of several processes has no way to
    # communicate; it affects CPUs only (GPUs use NCCL).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=n, process_id=i,
                               local_device_ids=local_device_ids,
                               initialization_timeout=init_timeout,
                               heartbeat_timeout_seconds=heartbeat_timeout)
    return True


def is_writer() -> bool:
    """True in the process that writes files and draws progress: process 0 (and a lone one)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches `barrier(name)` (no-op with one process).

    Every process must call it with the same `name`, in the same order.  A process that died
    is noticed through the heartbeat, so this never waits forever."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _local_devices_on_axis(mesh) -> int:
    if not isinstance(mesh, jax.sharding.Mesh) or "data" not in mesh.axis_names:
        raise ValueError("global_batch needs a jax.sharding.Mesh with an axis 'data' (e.g. "
                         f"jaxnet.data_mesh()), got {mesh!r}")
    if mesh.devices.ndim != 1:
        raise ValueError(f"global_batch needs a one-axis mesh ('data',), got axes "
                         f"{mesh.axis_names}")
    me = jax.process_index()
    return sum(d.process_index == me for d in mesh.devices.flat)


def global_batch(mesh, X_local, Y_local):
    """One global `(X, Y)` from each process's own columns, sharded over the mesh axis "data".

    Arguments:
        mesh: a one-axis mesh ``("data",)`` over the devices of every process, ordered by
            process (``jaxnet.data_mesh()``).
        X_local: this process's examples, `(..., m_local)` (the layout `fit` takes: examples
            last); every process passes the same `m_local`, a multiple of its number of
            devices on the mesh.
        Y_local: their targets, `(..., m_local)`.

    Returns:
        `(X, Y)`: `jax.Array`s of shapes `(..., m)` with `m = m_local × processes`, column
        block `p` holding process `p`'s columns; each device holds `m / D` of them.  Pass them
        to `fit(..., mesh=mesh)`: minibatches are drawn from all `m` columns, so the result is
        the one a single process holding the whole `X` would get.
    """
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    n_local = _local_devices_on_axis(mesh)
    if n_local == 0:
        raise ValueError("the mesh holds none of this process's devices")
    X_local, Y_local = np.asarray(X_local), np.asarray(Y_local)
    if X_local.ndim < 1 or Y_local.ndim < 1:
        raise ValueError(f"X_local and Y_local need examples on their last axis, got shapes "
                         f"{X_local.shape} and {Y_local.shape}")
    m_local = X_local.shape[-1]
    if Y_local.shape[-1] != m_local:
        raise ValueError(f"X_local has {m_local} examples (last axis) but Y_local has "
                         f"{Y_local.shape[-1]}")
    if m_local == 0 or m_local % n_local:
        raise ValueError(f"this process's m_local = {m_local} examples do not split over its "
                         f"{n_local} devices on the 'data' axis; give each process a multiple "
                         f"of {n_local} (e.g. {m_local - m_local % n_local or n_local})")
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        sizes = np.asarray(multihost_utils.process_allgather(np.asarray([m_local]))).ravel()
        if len(set(sizes.tolist())) != 1:
            raise ValueError(f"every process must hold the same number of examples; they hold "
                             f"{sizes.tolist()} (process 0, 1, ...)")
    last = lambda a: NamedSharding(mesh, P(*([None] * (a.ndim - 1)), "data"))
    return (jax.make_array_from_process_local_data(last(X_local), X_local),
            jax.make_array_from_process_local_data(last(Y_local), Y_local))


def to_host(tree):
    """A pytree of (replicated) arrays as numpy arrays, usable by this process alone."""
    return jax.tree.map(np.asarray, tree)
