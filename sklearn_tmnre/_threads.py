"""How many torch threads a fit or a posterior uses.

Torch's intra-op thread pool spins while it waits: on a machine whose cores are
shared with other work, more torch threads than free cores slows training many
times over (13-17x measured on 2 shared cores), while on small ratio networks a
second thread buys little even on an idle machine. So the estimator chooses its
thread count from the cores that are actually free when it starts, and falls back
to one thread when in doubt; ``n_threads`` overrides the choice.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["available_cores", "resolve_n_threads", "torch_threads"]


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_n_threads(n_threads):
    """The torch thread count of ``n_threads`` (None: the cores that are free now).

    Parameters
    ----------
    n_threads : int or None
        A positive count is used as given. None counts the cores this process
        may use less the one-minute load average (other processes' work, and
        this process's own recent work), rounded down and at least one.

    Returns
    -------
    int
    """
    if n_threads is not None:
        return int(n_threads)
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): stay on one thread
        return 1
    return int(max(1, min(cores, cores - busy)))


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run the block with ``resolve_n_threads(n_threads)`` torch threads, then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(resolve_n_threads(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
