"""Command-line helpers shared by the subcommands: true/false values, flag spellings, defaults in help texts.

Torch-free and light: every parser is built from these before any command runs (`sharebert --help` too).
A flag's default is not typed here or in the parser: the parser's default is None ("not given") and the
stage's config dataclass owns the value, which `add_flag(..., config=...)` reads to show it in the help.
"""

from __future__ import annotations

import argparse
import dataclasses
import re

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
# Arguments of the entry point itself, not settings of the command.
ENTRY_POINT_ARGS = ("command", "func", "quiet", "verbose")


def parse_bool(text: str) -> bool:
    """A true/false value as flags and settings spell it: true/false, 1/0, yes/no, on/off, in any case."""
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not true or false")


def bool_value(text: str) -> bool:
    """parse_bool as an argparse type, so that argparse prints its message."""
    try:
        return parse_bool(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def switch(help: str) -> dict:
    """Options of a boolean flag used alone (--name: true) or with a value (--name false), as Hugging Face's
    and the reference's scripts parse them. Not given: None."""
    return dict(type=bool_value, nargs="?", const=True, metavar="BOOL", help=help)


def add_flag(group, *names: str, config=None, **kwargs) -> None:
    """--name and its kebab-case alias --name-with-dashes for each name; dest: the first name.

    `config`: the dataclass whose field named like dest holds the flag's default; the help shows it.
    """
    flags = [spelling for name in names for spelling in dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}"))]
    kwargs.setdefault("dest", names[0])
    if "metavar" not in kwargs and kwargs.get("type") in (int, float):
        kwargs["metavar"] = "N" if kwargs["type"] is int else "X"
    if config is not None:
        kwargs["help"] = with_default(kwargs.get("help"), config, kwargs["dest"])
    group.add_argument(*flags, **kwargs)


def with_default(text: str | None, config, name: str) -> str | None:
    """`text` followed by "(default X)", X being the default of field `name` of the dataclass `config`."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    if name not in fields:
        raise KeyError(f"{config.__name__} has no field {name!r}")
    shown = _shown_default(fields[name])
    if shown is None:
        return text
    return f"{text} (default {shown})" if text else f"default {shown}"


def _shown_default(f: dataclasses.Field) -> str | None:
    """How the help writes a field's default; None when there is nothing worth showing (None, false, empty)."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return None
    if value is None or value is False or (isinstance(value, (str, tuple, list)) and not value):
        return None
    if value is True:
        return "true"
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m[1].replace("+", "") + m[2], f"{value:g}")
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return str(value)


def common_options() -> argparse.ArgumentParser:
    """The options every subcommand takes (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return common


def command_flags(args: argparse.Namespace) -> dict:
    """The parsed flags of a subcommand by name (None: not given), without the entry point's own arguments."""
    return {name: value for name, value in vars(args).items() if name not in ENTRY_POINT_ARGS}
