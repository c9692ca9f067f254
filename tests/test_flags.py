"""The command-line helpers every subcommand shares: true/false values, flag spellings, defaults in the help."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from sharebert.flags import add_flag, parse_bool, switch, with_default


@pytest.mark.parametrize("text", ["1", "true", "True", " YES ", "on"])
def test_true_words(text):
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "false", "FALSE", "no", "off "])
def test_false_words(text):
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "maybe", "2", "truee"])
def test_other_words_are_refused(text):
    with pytest.raises(ValueError, match="is not true or false"):
        parse_bool(text)


@dataclass
class Settings:
    steps: int = 1000
    rate: float = 5e-5
    big: float = 2e16
    name: str = "base"
    on: bool = True
    off: bool = False
    folder: str | None = None
    seeds: list[int] = field(default_factory=lambda: [42, 7])


@pytest.mark.parametrize(
    "name, help",
    [
        ("steps", "text (default 1000)"),
        ("rate", "text (default 5e-5)"),
        ("big", "text (default 2e16)"),
        ("name", "text (default base)"),
        ("on", "text (default true)"),
        ("off", "text"),
        ("folder", "text"),
        ("seeds", "text (default 42 7)"),
    ],
)
def test_the_help_shows_the_dataclass_default(name, help):
    assert with_default("text", Settings, name) == help


def test_a_help_without_text_is_the_default_alone_and_an_unknown_field_is_an_error():
    assert with_default(None, Settings, "steps") == "default 1000"
    with pytest.raises(KeyError, match="no field 'stepz'"):
        with_default("text", Settings, "stepz")


def test_flags_get_kebab_aliases_and_switches_take_an_optional_value():
    parser = argparse.ArgumentParser()
    add_flag(parser, "max_steps", "steps", type=int, config=Settings, dest="steps")
    add_flag(parser, "on", config=Settings, **switch("turn it on"))
    action = next(a for a in parser._actions if a.dest == "steps")
    assert action.option_strings == ["--max_steps", "--max-steps", "--steps"]
    assert action.default is None and action.help == "default 1000"
    assert vars(parser.parse_args([])) == {"steps": None, "on": None}
    assert vars(parser.parse_args(["--max-steps", "5", "--on"])) == {"steps": 5, "on": True}
    assert parser.parse_args(["--on", "off"]).on is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--on", "maybe"])


@pytest.mark.parametrize(
    ("command", "config", "required"),
    [
        ("prepare", "sharebert.pipeline.prepare.config:PrepareConfig", ["-o", "out"]),
        ("mask", "sharebert.pipeline.mask.config:MaskConfig", ["prepared"]),
    ],
)
def test_data_stage_flags_leave_every_default_to_their_config(command, config, required):
    import dataclasses
    import importlib

    from sharebert.cli import build_parser

    module, name = config.split(":")
    settings = getattr(importlib.import_module(module), name)
    parser = build_parser()
    args = vars(parser.parse_args([command, *required]))
    fields = {f.name: f for f in dataclasses.fields(settings)}
    given_by_default = {k: v for k, v in args.items() if k in fields and v is not None and k != "inputs"}
    assert given_by_default == {}
    subparser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in subparser._actions:
        f = fields.get(action.dest)
        if f is not None and not isinstance(f.default, (bool, type(None), type(dataclasses.MISSING))):
            assert f"(default {f.default})" in action.help, (action.dest, action.help)
