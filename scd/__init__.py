"""scd: self-consistent chain-of-thought distillation (SCOTT) with Hydra and Lightning."""

import os

__version__ = "0.1.0"

# How many times a waiting OpenMP thread (torch's CPU threads, libgomp) spins before it sleeps. libgomp's own 300,000
# (about 3 ms) keeps each thread busy between parallel regions: beside any other busy process the spinning threads
# take the cores the working ones wait for (benchmarks/threads.py: a teacher build's 0.40 steps/s instead of 11.9
# beside a one-thread run), while no spin at all (OMP_WAIT_POLICY=PASSIVE) costs 17% on idle cores.
OPENMP_SPIN = "10000"


def _bound_openmp_spin() -> None:
    """Set GOMP_SPINCOUNT before torch loads (libgomp reads it once, then), unless the user chose a spin or a wait
    policy: ``import scd`` comes first in run.py, ``python -m scd.predict`` and ``python -m scd.report``."""
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN


_bound_openmp_spin()
