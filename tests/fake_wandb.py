"""A stand-in for the wandb module: records what the training loops ask of it and can refuse to go online."""

from __future__ import annotations

import sys


class FakeRun:
    def __init__(self, init_kwargs: dict, number: int):
        self.init_kwargs = init_kwargs
        self.id = f"fake-run-{number}"
        self.logged: list[tuple[int, dict]] = []
        self.finished = False

    def log(self, values: dict, step: int) -> None:
        assert not self.finished, "logged to a finished run"
        self.logged.append((step, values))

    def finish(self) -> None:
        self.finished = True


class FakeSettings:
    def __init__(self, **settings):
        self.settings = settings


class FakeWandb:
    """`init` records its keyword arguments (every call, the failed ones too) and returns a FakeRun."""

    Settings = FakeSettings

    def __init__(self, fail_online: bool):
        self.fail_online = fail_online
        self.inits: list[dict] = []
        self.runs: list[FakeRun] = []

    def init(self, **kwargs) -> FakeRun:
        self.inits.append(kwargs)
        if self.fail_online and kwargs["mode"] == "online":
            raise RuntimeError("api.wandb.ai unreachable")
        self.runs.append(FakeRun(kwargs, len(self.runs)))
        return self.runs[-1]

    @property
    def modes(self) -> list[str]:
        return [kwargs["mode"] for kwargs in self.inits]


def install_fake_wandb(monkeypatch, fail_online: bool = False) -> FakeWandb:
    """`import wandb` gives a FakeWandb for the rest of the test."""
    fake = FakeWandb(fail_online)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return fake


def set_wandb_credentials(monkeypatch, tmp_path) -> None:
    """What `wandb login` leaves behind (a key in ~/.netrc), and an API key in the environment."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
