"""Kills every stage at random moments and feeds the CLI bad input; prints what survived (docs/reliability.md).

    python bench/chaos.py [--kills N] [--seed S] [--json out.json] [--quick] [--work-dir DIR]

Kills: each stage (prepare and mask with 1 and 2 workers, pretrain with --resume) is first run uninterrupted
for reference outputs and its duration; then, N times, the same command is started, its main process gets
SIGKILL after a seeded random delay within that duration (as an OOM killer would: its workers are not
signalled), and the command is rerun to completion. Each kill is checked for: the rerun exits 0, its outputs
are byte-identical to the reference (pretrain: the exported model and the losses of every logged step),
no temporary files are left, and no process it started outlives it by 5 s (found by a marker in their
environment, since a killed parent's children are re-parented).

Bad input: each case runs the CLI once and expects exit 2, one line on stderr (no traceback) and nothing
written beside its inputs. Everything is built here from generated data (tests/wikidump.py); no network.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the checkout's sharebert, and the dump generator of the tests

from wikidump import write_wiki_dump  # noqa: E402

ARTICLES = 120
VOCAB_SIZE = 2000
MARKER_ENV = "SHAREBERT_CHAOS_MARKER"
ORPHAN_GRACE_SECONDS = 5.0
# When the kill comes, as fractions of the uninterrupted run's duration; not up to 1, since a run's duration
# varies on a shared machine and a kill after the end tests nothing.
KILL_WINDOW = (0.02, 0.85)
RUN_TIMEOUT_SECONDS = 600
PRETRAIN_FLAGS = [
    "--preset", "tiny", "--fp32", "--seed", "1", "--train_batch_size", "16", "--train_micro_batch_size_per_gpu", "8",
    "--max_steps", "24", "--checkpoint_steps", "4", "--log_steps", "1", "--resume", "-q",
]  # fmt: skip
SHORT_RUN = [*PRETRAIN_FLAGS, "--max_steps", "4", "--checkpoint_steps", "1"]  # the run the bad inputs use
# Names a finished run must not hold: temporary files and folders of an interrupted write or export.
TEMPORARY_MARKERS = (".tmp", ".partial", ".part", ".prepare-work", ".model.old-")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sharebert.cli", *args]


def child_env(marker: str = "") -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env[MARKER_ENV] = marker
    return env


def run_to_end(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS
    )


def check_ok(result: subprocess.CompletedProcess) -> None:
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(result.args[3:5])} ... failed (exit {result.returncode}):\n{result.stderr}")


# ---------------------------------------------------------------------------------------------- inputs


@dataclasses.dataclass
class Inputs:
    """The work folder, with dump.xml.bz2, vocab/vocab.txt, prepared/, samples/ and (optionally) run/ in it."""

    work: Path
    has_run: bool = False

    @property
    def vocab(self) -> Path:
        return self.work / "vocab" / "vocab.txt"


def build_inputs(work: Path, pretrain_steps: int | None = None) -> Inputs:
    """A generated dump, a vocab trained on it, its prepared shards and samples, and (with pretrain_steps) an
    unfinished pretraining run stopped after that many steps, with a checkpoint at each (for the bad inputs)."""
    work.mkdir(parents=True, exist_ok=True)
    write_wiki_dump(work / "dump.xml.bz2", articles=ARTICLES)
    check_ok(
        run_to_end(
            cli("prepare", "--wiki", "dump.xml.bz2", "--train-vocab", str(VOCAB_SIZE), "-o", "vocab", "-q"), work
        )
    )
    check_ok(run_to_end(STAGES["prepare"].command("prepared", 1), work))
    check_ok(run_to_end(STAGES["mask"].command("samples", 1), work))
    inputs = Inputs(work)
    if pretrain_steps is not None:
        stop = ["--exit_at_step", str(pretrain_steps)]  # a run left unfinished, as --resume finds it
        check_ok(
            run_to_end(cli("pretrain", "--dataset_path", "samples", "--output_dir", "run", *SHORT_RUN, *stop), work)
        )
        write_tiny_model(work / "model", inputs.vocab)
        inputs.has_run = True
    return inputs


def write_tiny_model(folder: Path, vocab: Path) -> None:
    """A model folder of the tiny preset for the fine-tuning case (pretraining one would take longer)."""
    from sharebert.trainer.model.config import ShareBertConfig
    from sharebert.trainer.model.modeling import ShareBertForMaskedLM, save_model_folder

    vocab_size = len(vocab.read_text(encoding="utf-8").splitlines())
    save_model_folder(ShareBertForMaskedLM(ShareBertConfig.from_preset("tiny", vocab_size=vocab_size)), folder, vocab)


# ---------------------------------------------------------------------------------------------- stages


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def pretrain_digests(run: Path) -> dict[str, str]:
    """The exported model's files, and the loss logged at each step (a resumed run may log a step twice: each
    time must give the same loss, so a disagreement shows as a second value)."""
    digests = folder_digests(run / "model") if (run / "model").is_dir() else {}
    losses: dict[int, set[float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []:
        record = json.loads(line)
        if "loss" in record:
            losses.setdefault(record["step"], set()).add(record["loss"])
    digests.update({f"loss@{step}": repr(sorted(values)) for step, values in losses.items()})
    return digests


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    command: Callable[[str, int], list[str]]  # (output folder, workers) -> command line, run in the work folder
    digests: Callable[[Path], dict[str, str]]
    workers: int = 1


STAGES = {
    "prepare": Stage("prepare", lambda out, w: cli("prepare", "--wiki", "dump.xml.bz2", "--vocab", "vocab/vocab.txt",
                                                  "-o", out, "--workers", str(w), "-q"), folder_digests),
    "mask": Stage("mask", lambda out, w: cli("mask", "prepared", "-o", out, "--dup-factor", "3", "--max-seq-length",
                                            "64", "--workers", str(w), "-q"), folder_digests),
    "pretrain": Stage("pretrain", lambda out, w: cli("pretrain", "--dataset_path", "samples", "--output_dir", out,
                                                    *PRETRAIN_FLAGS), pretrain_digests),
}  # fmt: skip


def stage_variants(names: list[str] | None = None) -> list[Stage]:
    variants = [
        dataclasses.replace(STAGES["prepare"], workers=1),
        dataclasses.replace(STAGES["prepare"], workers=2),
        dataclasses.replace(STAGES["mask"], workers=1),
        dataclasses.replace(STAGES["mask"], workers=2),
        STAGES["pretrain"],
    ]
    return [v for v in variants if names is None or label(v) in names]


def label(stage: Stage) -> str:
    return stage.name if stage.name == "pretrain" else f"{stage.name} --workers {stage.workers}"


# ---------------------------------------------------------------------------------------------- processes


def processes_with_marker(marker: str) -> list[int]:
    """Live processes whose environment holds MARKER_ENV=marker (those started by one killed run)."""
    needle = f"{MARKER_ENV}={marker}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes() + b"\0" and not _is_zombie(entry):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def _is_zombie(proc: Path) -> bool:
    return proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def orphans_after_kill(marker: str) -> list[int]:
    """The processes of a killed run still alive ORPHAN_GRACE_SECONDS later; they are killed before returning."""
    deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
    while (alive := processes_with_marker(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive


def leftover_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if any(m in p.name for m in TEMPORARY_MARKERS))


# ---------------------------------------------------------------------------------------------- kills


@dataclasses.dataclass
class KillResult:
    delay_s: float
    killed_running: bool
    rerun_ok: bool
    identical: bool
    leftovers: list[str]
    orphans: int


@dataclasses.dataclass
class StageReport:
    stage: str
    reference_s: float
    kills: list[KillResult]

    def row(self) -> dict:
        k = self.kills
        return {
            "stage": self.stage,
            "kills": len(k),
            "killed while running": sum(r.killed_running for r in k),
            "reruns ok": sum(r.rerun_ok for r in k),
            "identical": sum(r.identical for r in k),
            "leftover files": sum(len(r.leftovers) for r in k),
            "orphans": sum(r.orphans for r in k),
        }

    @property
    def passed(self) -> bool:
        return all(r.rerun_ok and r.identical and not r.leftovers and not r.orphans for r in self.kills)


def kill_stage(inputs: Inputs, stage: Stage, kills: int, rng: random.Random) -> StageReport:
    base = f"{stage.name}-w{stage.workers}"
    started = time.monotonic()
    check_ok(run_to_end(stage.command(f"{base}-reference", stage.workers), inputs.work))
    reference_s = time.monotonic() - started
    reference = stage.digests(inputs.work / f"{base}-reference")
    results = []
    for i in range(kills):
        out = f"{base}-kill{i}"
        results.append(kill_once(inputs.work, stage, out, rng.uniform(*KILL_WINDOW) * reference_s, reference))
        shutil.rmtree(inputs.work / out, ignore_errors=True)
    return StageReport(label(stage), round(reference_s, 2), results)


def kill_once(work: Path, stage: Stage, out: str, delay_s: float, reference: dict[str, str]) -> KillResult:
    command = stage.command(out, stage.workers)
    marker = uuid.uuid4().hex
    process = subprocess.Popen(
        command, cwd=work, env=child_env(marker), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        process.wait(timeout=delay_s)
        killed_running = False
    except subprocess.TimeoutExpired:
        process.kill()  # the main process only
        process.wait()
        killed_running = True
    orphans = orphans_after_kill(marker)
    rerun = run_to_end(command, work)
    identical = rerun.returncode == 0 and stage.digests(work / out) == reference
    return KillResult(
        round(delay_s, 2), killed_running, rerun.returncode == 0, identical, leftover_files(work / out), len(orphans)
    )


# ---------------------------------------------------------------------------------------------- bad input


@dataclasses.dataclass(frozen=True)
class BadInput:
    name: str
    setup: Callable[[Inputs, Path], list[str]]  # (inputs, the case's own folder) -> CLI arguments, run in that folder
    needs_run: bool = False  # needs a pretraining run (checkpoints, an exported model)
    # A validation report: one line per problem found (each naming its file), then the one error line.
    report: bool = False


@dataclasses.dataclass
class BadInputResult:
    case: str
    exit: int
    one_line: bool
    traceback: bool
    partial_output: list[str]
    message: str

    @property
    def passed(self) -> bool:
        return self.exit == 2 and self.one_line and not self.traceback and not self.partial_output


def _prepare_text(path: str, inputs: Inputs) -> list[str]:
    return ["prepare", "--text", path, "--vocab", str(inputs.vocab), "-o", "out", "-q"]


def _prepare_wiki(case: Path, inputs: Inputs, content: bytes) -> list[str]:
    (case / "dump.xml").write_bytes(content)
    return ["prepare", "--wiki", "dump.xml", "--vocab", str(inputs.vocab), "-o", "out", "-q"]


def _prepare_vocab(case: Path, inputs: Inputs, content: bytes | None) -> list[str]:
    if content is not None:
        (case / "vocab.txt").write_bytes(content)
    return ["prepare", "--wiki", str(inputs.work / "dump.xml.bz2"), "--vocab", "vocab.txt", "-o", "out", "-q"]


def _text_file(case: Path, content: bytes) -> str:
    (case / "text.txt").write_bytes(content)
    return "text.txt"


def _directory(case: Path) -> str:
    (case / "folder").mkdir()
    return "folder"


def _existing_file(case: Path) -> str:
    (case / "out").write_text("not a folder\n")
    return "out"


def _copy(inputs: Inputs, case: Path, name: str) -> Path:
    return Path(shutil.copytree(inputs.work / name, case / name))


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _mask_prepared(inputs: Inputs, case: Path, damage: Callable[[Path], None]) -> list[str]:
    damage(_copy(inputs, case, "prepared"))
    return ["mask", "prepared", "-o", "out", "-q"]


def _other_schema_shard(prepared: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = sorted(prepared.glob("train-*.parquet"))[0]
    pq.write_table(pa.table({"words": ["a", "b"]}), shard)


def _samples(inputs: Inputs, case: Path, damage: Callable[[Path], None], command: str) -> list[str]:
    damage(_copy(inputs, case, "samples"))
    if command == "validate":
        return ["mask", "--validate-only", "samples", "-q"]
    return ["pretrain", "--dataset_path", "samples", "--output_dir", "run", *PRETRAIN_FLAGS]


def _absolute_entry(samples: Path) -> None:
    _edit_json(samples / "manifest.json", lambda m: m["files"][0].update(name=str(samples / m["files"][0]["name"])))


def _escaping_entry(samples: Path) -> None:
    _edit_json(samples / "manifest.json", lambda m: m["files"][0].update(name="../" + m["files"][0]["name"]))


def _wrong_type_setting(samples: Path) -> None:
    _edit_json(samples / "manifest.json", lambda m: m["settings"].update(max_seq_length="abc"))


def _truncated_file(samples: Path) -> None:
    first = samples / json.loads((samples / "manifest.json").read_text())["files"][0]["name"]
    with open(first, "r+b") as f:
        f.truncate(first.stat().st_size // 2)


def _garbage_rank_file(inputs: Inputs, case: Path) -> list[str]:
    run = _copy(inputs, case, "run")
    checkpoints = run / "checkpoints"
    latest = checkpoints / (checkpoints / "latest").read_text().strip()
    for rank_file in latest.glob("sharebert-rank*.pt"):
        rank_file.write_bytes(b"\x80garbage, not a checkpoint" * 10)
    return ["pretrain", "--dataset_path", str(inputs.work / "samples"), "--output_dir", "run", *SHORT_RUN]


def _finetune_without_task(inputs: Inputs, case: Path) -> list[str]:
    (case / "glue").mkdir()
    model = str(inputs.work / "model")
    return [
        "finetune",
        "--model_name_or_path",
        model,
        "--task_name",
        "rte",
        "--data_dir",
        "glue",
        "--output_dir",
        "out",
        "-q",
    ]


BAD_INPUTS = [
    BadInput("prepare: missing --text file", lambda i, c: _prepare_text("missing.txt", i)),
    BadInput("prepare: a directory as --text", lambda i, c: _prepare_text(_directory(c), i)),
    BadInput("prepare: non-UTF-8 --text, one document",
             lambda i, c: _prepare_text(_text_file(c, b"caf\xe9 \xff\xfe\x80 ok.\n"), i)),
    BadInput("prepare: empty dump", lambda i, c: _prepare_wiki(c, i, b"")),
    BadInput("prepare: dump not XML", lambda i, c: _prepare_wiki(c, i, b"just some words, no markup\n" * 10)),
    BadInput("prepare: --vocab missing", lambda i, c: _prepare_vocab(c, i, None)),
    BadInput("prepare: --vocab empty", lambda i, c: _prepare_vocab(c, i, b"")),
    BadInput("prepare: --vocab binary", lambda i, c: _prepare_vocab(c, i, bytes(range(256)) * 8)),
    BadInput("prepare: -o an existing file", lambda i, c: [*_prepare_text(_text_file(c, b"One. Two.\n"), i)[:-3],
                                                           "-o", _existing_file(c), "-q"]),
    BadInput("mask: folder without prepare.json", lambda i, c: _mask_prepared(i, c, lambda p: (p / "prepare.json").unlink())),
    BadInput("mask: prepare.json shards of wrong type",
             lambda i, c: _mask_prepared(i, c, lambda p: _edit_json(p / "prepare.json", lambda d: d.update(shards="all")))),
    BadInput("mask: shard of another schema", lambda i, c: _mask_prepared(i, c, _other_schema_shard)),
    BadInput("mask --validate-only: absolute manifest entry", lambda i, c: _samples(i, c, _absolute_entry, "validate")),
    BadInput("pretrain: absolute manifest entry", lambda i, c: _samples(i, c, _absolute_entry, "pretrain")),
    BadInput("pretrain: manifest entry with ..", lambda i, c: _samples(i, c, _escaping_entry, "pretrain")),
    BadInput("mask --validate-only: max_seq_length \"abc\"",
             lambda i, c: _samples(i, c, _wrong_type_setting, "validate")),
    BadInput("pretrain: max_seq_length \"abc\"", lambda i, c: _samples(i, c, _wrong_type_setting, "pretrain")),
    BadInput("mask --validate-only: truncated samples file", lambda i, c: _samples(i, c, _truncated_file, "validate"),
             report=True),
    BadInput("pretrain: truncated samples file", lambda i, c: _samples(i, c, _truncated_file, "pretrain")),
    BadInput("pretrain: --dataset_path a prepared folder",
             lambda i, c: ["pretrain", "--dataset_path", str(i.work / "prepared"), "--output_dir", "run", *PRETRAIN_FLAGS]),
    BadInput("pretrain --resume: garbage rank file", _garbage_rank_file, needs_run=True),
    BadInput("finetune: data_dir without the task", _finetune_without_task, needs_run=True),
]  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def run_bad_input(inputs: Inputs, case: BadInput, index: int) -> BadInputResult:
    folder = inputs.work / "bad-input" / f"case{index:02d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    args = case.setup(inputs, folder)
    before = snapshot(folder)
    result = run_to_end(cli(*args), folder)
    after = snapshot(folder)
    changed = sorted(name for name, state in after.items() if before.get(name) != state)
    lines = result.stderr.strip().splitlines()
    one_line = len(lines) == 1 or (case.report and len(lines) > 1 and _is_problem_report(lines))
    return BadInputResult(
        case.name, result.returncode, one_line, "Traceback" in result.stderr, changed, lines[-1] if lines else ""
    )


def _is_problem_report(lines: list[str]) -> bool:
    """Problem lines that each begin with the file they are about, then `sharebert ...: error: ...`."""
    *problems, last = lines
    return " error: " in last and all(re.match(r"\S+\.(hdf5|json|txt): ", line) for line in problems)


def run_bad_inputs(inputs: Inputs, cases: list[BadInput] = BAD_INPUTS) -> list[BadInputResult]:
    """The cases, run two at a time (each is mostly interpreter start-up), in their order."""
    runnable = [(i, case) for i, case in enumerate(cases) if inputs.has_run or not case.needs_run]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda item: run_bad_input(inputs, item[1], item[0]), runnable))


# ---------------------------------------------------------------------------------------------- report


def table(rows: list[dict]) -> str:
    """A Markdown table of rows with the same keys."""
    keys = list(rows[0])
    cells = [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(keys), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def bad_input_row(r: BadInputResult) -> dict:
    return {
        "case": r.case,
        "exit": r.exit,
        "stderr": "traceback" if r.traceback else ("one line (or a report)" if r.one_line else "several lines"),
        "partial output": ", ".join(r.partial_output) or "none",
        "ok": "yes" if r.passed else "NO",
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs per stage (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    p.add_argument("--quick", action="store_true", help="2 kills per stage")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--work-dir", type=Path, help="keep the files here (default: a temporary folder, removed)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kills = 2 if args.quick else args.kills
    with tempfile.TemporaryDirectory(prefix="sharebert-chaos-") as tmp:
        inputs = build_inputs(args.work_dir or Path(tmp), pretrain_steps=2)
        rng = random.Random(args.seed)
        stages = []
        for stage in stage_variants():
            stages.append(kill_stage(inputs, stage, kills, rng))
            print(f"{stages[-1].stage}: {stages[-1].row()}", file=sys.stderr, flush=True)
        bad = run_bad_inputs(inputs)
    print(f"SIGKILL of the main process at a random moment, then a rerun ({kills} per stage, seed {args.seed}):\n")
    print(table([s.row() for s in stages]))
    print("\nBad input (expected: exit 2, one line, nothing written):\n")
    print(table([bad_input_row(r) for r in bad]))
    if args.json:
        results = {
            "stages": [dataclasses.asdict(s) for s in stages],
            "bad_inputs": [dataclasses.asdict(r) for r in bad],
        }
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(s.passed for s in stages) and all(r.passed for r in bad) else 1


if __name__ == "__main__":
    sys.exit(main())
