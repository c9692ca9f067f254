"""Running a parsed subcommand: logging, one-line errors and the exit status.

Shared by the entry points: `sharebert` / `python -m sharebert` (cli.py) and the deepspeed launcher's
`python -m sharebert.trainer.pretrain.cli`, which must not import cli.py.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .errors import ShareBertError


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
    return int(status or 0)


def _configure_logging(args: argparse.Namespace) -> None:
    from .progress import set_quiet

    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    if getattr(args, "quiet", False):
        level = logging.WARNING
    set_quiet(getattr(args, "quiet", False))
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
