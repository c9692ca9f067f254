"""Process-level pieces of a training run: seeding and RNG state, stop signals, the training clock."""

from __future__ import annotations

import logging
import random
import signal
import threading
import time

import numpy as np
import torch

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ randomness
def seed_everything(seed: int, rank: int) -> None:
    """Seed the global generators (dropout draws from torch's); each rank gets its own stream."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def capture_rng() -> dict:
    """The global generators' states (python, numpy, torch, every CUDA device when there is one).

    Only python and torch types, so that a checkpoint holding them loads with torch.load(weights_only=True).
    """
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Set the global generators to a `capture_rng` state."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------ stop signals
class StopSignals:
    """SIGTERM / SIGINT set a flag that the loop reads after each step, so the run stops with a checkpoint.

    Signals that arrive together (a terminal's Ctrl-C reaches the launcher and every worker; a launcher then
    forwards SIGTERM) count as one request. A SIGINT more than `force_after_s` seconds after the first
    request aborts at once (KeyboardInterrupt), for a run that does not stop.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, force_after_s: float = 3.0):
        self.force_after_s = force_after_s
        self.received: str | None = None
        self._first_at = 0.0
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received, self._first_at = name, time.monotonic()
            log.warning("%s received: stopping after this step with a checkpoint (Ctrl-C again to abort)", name)
        elif signum == signal.SIGINT and time.monotonic() - self._first_at > self.force_after_s:
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# ------------------------------------------------------------------------------------ time
class TrainingClock:
    """Training time in seconds, carried across resumes (what the time budget and time schedule count)."""

    def __init__(self, previous_s: float = 0.0):
        self.previous_s = previous_s
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return self.previous_s + time.monotonic() - self._start
