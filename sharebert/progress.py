"""Progress bars that stay quiet when asked to, or when stderr is not a terminal."""

from __future__ import annotations

import sys

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def progress_enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


def progress_bar(**kwargs):
    """A tqdm bar (tqdm's keyword arguments), or under --quiet or without a TTY a bar that shows nothing
    (tqdm is not even imported then: that costs ~0.025 s, a tenth of a small prepare run's serial part)."""
    if kwargs.get("disable", not progress_enabled()):
        return QuietBar(kwargs.get("total"), kwargs.get("initial", 0))
    from tqdm.auto import tqdm

    # No monitor thread: worker pools fork this process only while it runs no thread but the main one.
    tqdm.monitor_interval = 0
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(**kwargs)


class QuietBar:
    """The part of tqdm's interface the stages use, counting steps and showing nothing."""

    disable = True

    def __init__(self, total=None, initial=0):
        self.total = total
        self.n = initial

    def update(self, n=1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> QuietBar:
        return self

    def __exit__(self, *exc) -> None:
        pass
