"""The `sharebert` command: one subcommand per stage.

Each subcommand only declares its flags, builds the stage's typed config from them and calls the
stage's one public function. Heavy libraries are imported inside those functions, so
`sharebert --help` is fast and works where torch, deepspeed, datasets or wandb are missing.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .errors import ShareBertError

log = logging.getLogger("sharebert")


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return common


# ---------------------------------------------------------------- sharebert prepare
def _add_prepare(sub, common) -> None:
    pass  # TODO(issue 2): registered by the prepare stage


# ---------------------------------------------------------------- sharebert mask
def _add_mask(sub, common) -> None:
    pass  # TODO(issue 3): registered by the mask stage


# ---------------------------------------------------------------- sharebert model
def _add_model(sub, common) -> None:
    pass  # TODO(issue 4): parameter summary of a preset or a model folder


# ---------------------------------------------------------------- sharebert pretrain
def _add_pretrain(sub, common) -> None:
    pass  # TODO(issue 5): registered by the pretrain stage


# ---------------------------------------------------------------- sharebert finetune
def _add_finetune(sub, common) -> None:
    pass  # TODO(issue 6): registered by the finetune stage


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharebert",
        description="Pretrain parameter-shared ShareBERT encoders from raw text and fine-tune them on GLUE.",
    )
    parser.add_argument("--version", action="version", version=f"sharebert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_options()
    for register in (_add_prepare, _add_mask, _add_model, _add_pretrain, _add_finetune):
        register(sub, common)
    return parser


def _configure_logging(args) -> None:
    from .progress import set_quiet

    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    if getattr(args, "quiet", False):
        level = logging.WARNING
    set_quiet(getattr(args, "quiet", False))
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
