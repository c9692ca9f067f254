"""Progress bars that stay quiet when asked to, or when stderr is not a terminal."""

from __future__ import annotations

import sys

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def progress_enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


def progress_bar(*args, **kwargs):
    """A tqdm bar, disabled under --quiet or without a TTY (same signature as tqdm)."""
    from tqdm.auto import tqdm

    # No monitor thread: worker pools fork this process only while it runs no thread but the main one.
    tqdm.monitor_interval = 0
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(*args, **kwargs)
