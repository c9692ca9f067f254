"""Running a parsed subcommand: logging, one-line errors and the exit status.

Shared by the entry points: `sharebert` / `python -m sharebert` (cli.py) and the deepspeed launcher's
`python -m sharebert.trainer.pretrain.cli`, which must not import cli.py.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from .errors import ShareBertError
from .fileio import disk_full_error, is_disk_full


def run(args: argparse.Namespace) -> int:
    """Call `args.func(args)`; a ShareBertError becomes one line on stderr and exit status 2."""
    _configure_logging(args)
    try:
        status = args.func(args)
    except ShareBertError as e:
        print(f"sharebert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sharebert {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a full disk where no writer turned it into a ShareBertError (e.g. in a worker)
        if not is_disk_full(e):
            raise
        print(f"sharebert {args.command}: error: {disk_full_error(_folder_written(e, args))}", file=sys.stderr)
        return 2
    return int(status or 0)


def _folder_written(error: BaseException, args: argparse.Namespace) -> Path:
    """The folder of the file whose write failed, as the error tells it; else the command's output folder."""
    cause: BaseException | None = error
    while cause is not None:
        named = getattr(cause, "filename", None) or _FILENAME_IN_TEXT.search(str(cause))
        if named:
            return Path(named if isinstance(named, str) else named.group(1)).parent
        cause = cause.__cause__ or cause.__context__
    return Path(getattr(args, "output", None) or getattr(args, "output_dir", None) or ".")


_FILENAME_IN_TEXT = re.compile(r"filename = '([^']+)'")  # how HDF5 names the file of a failed write


def _configure_logging(args: argparse.Namespace) -> None:
    from .progress import set_quiet

    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    if getattr(args, "quiet", False):
        level = logging.WARNING
    set_quiet(getattr(args, "quiet", False))
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
