"""Progress bars: tqdm on a terminal, a silent counter otherwise (without importing tqdm)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from sharebert import progress

_QUIET_RUN = """
import sys
from sharebert.progress import progress_bar
with progress_bar(total=10, initial=2, unit="B") as bar:
    bar.update(3)
    bar.set_postfix(documents="5")
print(bar.n, bar.total, bar.disable, "tqdm" in sys.modules)
"""


def test_without_a_terminal_the_bar_counts_silently_and_tqdm_is_not_imported():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", _QUIET_RUN], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["5", "10", "True", "False"]
    assert out.stderr == ""


def test_on_a_terminal_the_bar_is_tqdm_unless_quiet(monkeypatch):
    from tqdm import tqdm

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(progress, "_quiet", False)  # an earlier test may have run a command with --quiet
    bar = progress.progress_bar(total=4, file=io.StringIO())
    try:
        assert isinstance(bar, tqdm) and not bar.disable
    finally:
        bar.close()
    monkeypatch.setattr(progress, "_quiet", True)
    assert isinstance(progress.progress_bar(total=4), progress.QuietBar)
