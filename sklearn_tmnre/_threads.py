"""How torch computes on the CPU during a fit or a posterior: threads and denormals.

Torch's intra-op thread pool spins while it waits: on a machine whose cores are
shared with other work, more torch threads than free cores slows training many
times over (13-17x measured on 2 shared cores). On the small matrices of the
vector embeddings and heads a second thread buys little even on an idle machine
(two threads trained the default two-moons network 7 % faster for twice the CPU
time), so those fits use one thread; convolutional and custom embeddings, whose
large tensors do gain, use the cores that are free when the call starts.
``n_threads`` overrides the choice.

Denormal (subnormal) floats are flushed to zero for the same calls: late in
training, as the learning rate anneals, optimizer state and activations drift
into the subnormal range, where x86 arithmetic is many times slower; on the
two-moons benchmark the last epochs of a default fit took 2.2x as long as the
first without the flush and the same with it. Their values are below 1e-38, so
flushing them changes no result that matters.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["VECTOR_EMBEDDINGS", "available_cores", "resolve_n_threads", "torch_compute"]


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


#: Embeddings of vectors: small matrix products, for which one thread is the choice.
VECTOR_EMBEDDINGS = ("identity", "linear", "mlp", "deepset")


def resolve_n_threads(n_threads, embedding=None):
    """The torch thread count of ``n_threads`` (None: chosen for ``embedding``).

    Parameters
    ----------
    n_threads : int or None
        A positive count is used as given. None gives one thread for a vector
        embedding (:data:`VECTOR_EMBEDDINGS`), and otherwise counts the cores
        this process may use less the one-minute load average (other processes'
        work, and this process's own recent work), rounded down and at least one.
    embedding : str, torch.nn.Module class or None
        The estimator's embedding.

    Returns
    -------
    int
    """
    if n_threads is not None:
        return int(n_threads)
    if isinstance(embedding, str) and embedding in VECTOR_EMBEDDINGS:
        return 1
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): stay on one thread
        return 1
    return int(max(1, min(cores, cores - busy)))


@contextlib.contextmanager
def torch_compute(n_threads, embedding=None):
    """Run the block with ``resolve_n_threads(n_threads, embedding)`` torch threads and
    denormals flushed to zero, then restore both."""
    before = torch.get_num_threads()
    torch.set_num_threads(resolve_n_threads(n_threads, embedding))
    # set_flush_denormal returns whether the CPU supports it; it has no getter, and torch's
    # default is off, which is what is restored.
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(before)
