"""Shared test settings."""

import matplotlib
import torch

# One intra-op thread: tests use tiny networks, and torch's thread pool spins
# badly when other processes (joblib workers, parallel test runs) share the cores.
torch.set_num_threads(1)
matplotlib.use("Agg")
