"""SIGTERM (SLURM pre-emption, ``timeout``, ``kill``) and SIGINT (Ctrl-C) end a run as interrupted, in any stage.

Inside a Lightning loop, Lightning's own SIGTERM handler runs first (it stops DDP children, and SLURM requeueing
relies on it); it asks the loop to stop at the next step boundary and the loop raises ``SIGTERMException``. Our handler
then only takes note. Lightning's predict loop never looks, so the teacher's Trainer gets ``StopPredictionOnSigterm``;
a loop that ends on its own first leaves the signal to ``raise_if_interrupted`` at the next stage boundary. Outside
Lightning the signal raises ``Interrupted`` where the run is, like Ctrl-C's KeyboardInterrupt. Whatever finished before
(cache shards, checkpoints, published directories) stays, so rerunning the same command resumes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

HANDLED = (signal.SIGTERM, signal.SIGINT)
# Signals received during the current run, oldest first.
_received: list[int] = []


class Interrupted(BaseException):
    """The run was ended by a signal. A BaseException, like KeyboardInterrupt, so no ``except Exception`` on the way
    (a library's, a Hydra launcher's) mistakes it for a failure and carries on."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}")


def _handler(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is not _handler:
        # Lightning's handler is installed and called us after its own: its loop stops at the next step.
        return
    raise Interrupted(signum)


def raise_if_interrupted() -> None:
    """Raise ``Interrupted`` for a signal a Lightning loop took note of but finished before acting on."""
    if _received:
        raise Interrupted(_received[0])


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise ``Interrupted`` (see the module docstring). Lightning ends its loops
    on a signal with SystemExit (``SIGTERMException``, or ``sys.exit(1)`` after a KeyboardInterrupt): those become
    ``Interrupted`` too. Signal handlers can only be set in the main thread; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {signum: signal.signal(signum, _handler) for signum in HANDLED}
    try:
        yield
    except (SystemExit, KeyboardInterrupt) as err:
        if isinstance(err, SIGTERMException) or _received:
            raise Interrupted(_received[0] if _received else signal.SIGTERM) from err
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()


class StopPredictionOnSigterm(pl.Callback):
    """Stop a predict loop after the batch in hand once Lightning has received SIGTERM, as its fit loop does. List it
    after the callback that writes the batch, so the batch is kept."""

    def on_predict_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.received_sigterm:
            raise SIGTERMException
