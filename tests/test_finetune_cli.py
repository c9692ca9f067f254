"""`sharebert finetune` from the command line: the published flags, the whole suite, errors, wandb."""

import json

import numpy as np
import pytest
from fake_wandb import install_fake_wandb, set_wandb_credentials
from finetune_fixtures import (
    GOOD,
    NEUTRAL,
    SUBMISSION_FILES,
    VOCAB_SIZE,
    sentiment_examples,
    write_ax,
    write_task,
    write_vocab,
)

from sharebert.cli import build_parser, main
from sharebert.flags import command_flags
from sharebert.trainer.finetune.config import FinetuneConfig
from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM, save_model_folder

LABELS = {
    "cola": ("0", "1"),
    "sst2": ("0", "1"),
    "mrpc": ("0", "1"),
    "qqp": ("0", "1"),
    "stsb": ("0.0", "4.5"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("0", "1"),
}
PAIRS = {"mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
TEST_ROWS = 6


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def finetune_argv(model, out, flags: str = "", **paths) -> list[str]:
    """`sharebert finetune` arguments: the model and output folders, `flags` (split at spaces), then a flag for
    each of `paths` (data_dir=..., dataset_name=...)."""
    argv = ["finetune", "--model_name_or_path", str(model), "--output_dir", str(out), *flags.split()]
    for name, path in paths.items():
        argv += [f"--{name}", str(path)]
    return argv


def _examples(rng, task, n):
    rows = []
    for i in range(n):
        a = " ".join(rng.choice(GOOD + NEUTRAL, 5))
        b = " ".join(rng.choice(NEUTRAL, 4)) if task in PAIRS else None
        rows.append((a, b, LABELS[task][i % len(LABELS[task])]))
    return rows


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    vocab = write_vocab(root / "vocab.txt")
    save_model_folder(
        ShareBertForMaskedLM(ShareBertConfig.from_preset("tiny", vocab_size=VOCAB_SIZE), seed=0), root / "model", vocab
    )
    rng = np.random.default_rng(0)
    for task in LABELS:
        write_task(
            root / "glue",
            task,
            _examples(rng, task, 24),
            _examples(rng, task, 9),
            [(a, b) for a, b, _ in _examples(rng, task, TEST_ROWS)],
        )
    write_ax(root / "glue", [("a good day", "the day"), ("it was", "it is"), ("kind", "nice")])
    return root


def test_the_whole_suite_with_seeds(suite, capsys):
    out = suite / "all"
    flags = "--task_name all --max_steps 2 --eval_steps 1 --per_device_train_batch_size 8 --seeds 1 2 --quiet"
    status = main(finetune_argv(suite / "model", out, flags, data_dir=suite / "glue"))
    assert status == 0
    printed = capsys.readouterr().out
    for name in ("CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI", "GLUE average"):
        assert f"| {name}" in printed or f"**{name}" in printed
    assert "GLUE average without WNLI" in printed
    assert (out / "summary.md").read_text() == printed
    report = json.loads((out / "eval_results.json").read_text())
    assert report["glue"]["tasks"] == ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]
    assert all(len(t["runs"]) == 2 for t in report["tasks"].values())
    assert set(report["tasks"]["mnli"]["metrics"]) == {"validation_matched/accuracy", "validation_mismatched/accuracy"}
    assert set(report["tasks"]["mrpc"]["metrics"]) == {"validation/accuracy", "validation/f1"}
    assert set(report["tasks"]["stsb"]["metrics"]) == {"validation/pearson", "validation/spearman"}
    assert set(report["tasks"]["cola"]["metrics"]) == {"validation/mcc"}
    scores = {name: t["score"]["median"] for name, t in report["tasks"].items()}
    assert report["glue"]["average"] == pytest.approx(np.mean(list(scores.values())))
    mnli_run = report["tasks"]["mnli"]["runs"][0]
    assert report["tasks"]["mnli"]["runs"][0]["score"] == pytest.approx(
        np.mean([m["accuracy"] for m in mnli_run["metrics"].values()])
    )
    files = {p.name: p.read_text().splitlines() for p in (out / "submission").iterdir()}
    assert set(files) == SUBMISSION_FILES
    for name, lines in files.items():
        assert lines[0] == "index\tprediction"
        assert len(lines) - 1 == (3 if name == "AX.tsv" else TEST_ROWS)
    assert {line.split("\t")[1] for line in files["QNLI.tsv"][1:]} <= {"entailment", "not_entailment"}
    assert {line.split("\t")[1] for line in files["AX.tsv"][1:]} <= {"entailment", "neutral", "contradiction"}


def test_the_published_command_is_accepted(suite, capsys):
    """jchenghu/sharebert's README fine-tuning command, flag for flag (fp16 falls back to fp32 on the CPU)."""
    out = suite / "published"
    argv = (
        (
            "finetune --local_rank=0 --model_name_or_path {model} --task_name RTE --max_seq_length 128 "
            "--output_dir {out} --overwrite_output_dir --do_train --do_eval --do_predict --evaluation_strategy steps "
            "--per_device_train_batch_size 64 --gradient_accumulation_steps 1 --per_device_eval_batch_size 64 "
            "--learning_rate 5e-5 --weight_decay 0.01 --eval_steps 50 --evaluation_strategy steps --max_grad_norm 1.0 "
            "--num_train_epochs 5 --fp16 --fp16_backend apex --lr_scheduler_type polynomial --warmup_steps 50 "
            "--data_dir {data} --quiet"
        )
        .format(model=suite / "model", out=out, data=suite / "glue")
        .split()
    )
    assert main(argv) == 0
    report = json.loads((out / "eval_results.json").read_text())
    run = report["tasks"]["rte"]["runs"][0]
    assert run["total_steps"] == 5 and run["seed"] == 42  # 24 examples: one step per epoch, HF's default seed
    assert report["precision"] == "fp32"
    settings = report["settings"]
    assert (settings["learning_rate"], settings["warmup_steps"], settings["per_device_train_batch_size"]) == (
        5e-5,
        50,
        64,
    )
    assert (out / "submission" / "RTE.tsv").exists()


def settings(flags: str) -> FinetuneConfig:
    args = build_parser().parse_args(["finetune", "--model_name_or_path", "M", "--output_dir", "O", *flags.split()])
    return FinetuneConfig.from_flags(**command_flags(args))


def test_the_defaults_are_the_configs():
    assert settings("--task_name rte --data_dir D") == FinetuneConfig(
        "M", "O", ["rte"], data_dir="D", predict_optional=True
    )


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("", dict(do_train=True, do_eval=True, do_predict=True, predict_optional=True)),
        ("--do_train", dict(do_train=True, do_eval=False, do_predict=False, predict_optional=False)),
        ("--do_eval --do_predict true", dict(do_train=False, do_eval=True, do_predict=True, predict_optional=False)),
        ("--seed 7", dict(seeds=[7])),
        ("--seeds 3 1", dict(seeds=[3, 1])),
        ("--bf16", dict(precision="bf16")),
        ("--fp16 --precision fp16", dict(precision="fp16")),
        ("--fp16 false --precision fp32", dict(precision="fp32")),
        ("--report_to wandb", dict(wandb=True)),
        ("--report_to all", dict(wandb=True)),
        ("--report_to none --wandb false", dict(wandb=False)),
        ("--local_rank 0 --fp16_backend apex", dict(precision="auto")),
    ],
)
def test_flags_that_are_not_settings_are_resolved(flags, expected):
    config = settings("--task_name rte --data_dir D " + flags)
    assert {name: getattr(config, name) for name in expected} == expected


def test_hugging_face_parquet_source(suite, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "glue" / "sst2"
    folder.mkdir(parents=True)
    rows = sentiment_examples(np.random.default_rng(1), 40)
    for split, part in (("train", rows[:24]), ("validation", rows[24:34]), ("test", rows[34:])):
        labels = [y for _, _, y in part] if split != "test" else [-1] * len(part)
        table = pa.table({"sentence": [a for a, _, _ in part], "label": labels, "idx": list(range(len(part)))})
        pq.write_table(table, folder / f"{split}-00000-of-00001.parquet")
    out = tmp_path / "out"
    argv = finetune_argv(suite / "model", out, "--task_name sst2 --max_steps 2 --quiet", dataset_name=tmp_path / "glue")
    assert main(argv) == 0
    assert len((out / "submission" / "SST-2.tsv").read_text().splitlines()) == 1 + 6


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task_name", "squad"], "unknown GLUE task 'squad'"),
        (["--task_name", "rte", "--learning_rate", "-1"], "learning_rate=-1.0 must be > 0"),
        (["--task_name", "rte", "--seed", "1", "--seeds", "2", "3"], "give --seed or --seeds"),
        (["--task_name", "rte", "--fp16", "--bf16"], "choose one precision"),
        (["--task_name", "rte", "--fp16", "--precision", "auto"], "choose one precision"),
        (["--task_name", "rte", "--local_rank", "1"], "--local_rank: fine-tuning runs in one process"),
        (["--task_name", "rte", "--do_train", "false"], "nothing to do"),
        (
            ["--task_name", "rte", "--max_seq_length", "512"],
            "max_position_embeddings=128 is below --max_seq_length 512",
        ),
    ],
)
def test_bad_settings_are_one_line_errors(suite, tmp_path, capsys, extra, message):
    argv = finetune_argv(suite / "model", tmp_path / "o", data_dir=suite / "glue") + extra
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sharebert finetune: error:") and message in err and "\n" not in err


def test_missing_data_names_the_file(suite, tmp_path, capsys):
    (tmp_path / "glue" / "RTE").mkdir(parents=True)
    argv = finetune_argv(suite / "model", tmp_path / "o", "--task_name rte", data_dir=tmp_path / "glue")
    assert main(argv) == 2
    assert "RTE/train.tsv: missing" in capsys.readouterr().err


def test_explicit_predict_needs_the_test_file(suite, tmp_path, capsys):
    glue = tmp_path / "glue"
    write_task(
        glue, "rte", _examples(np.random.default_rng(0), "rte", 8), _examples(np.random.default_rng(1), "rte", 4), []
    )
    (glue / "RTE" / "test.tsv").unlink()
    flags = "--task_name rte --max_steps 1 --quiet"
    implicit = finetune_argv(suite / "model", tmp_path / "implicit", flags, data_dir=glue)
    assert main(implicit) == 0  # no test file: no submission
    assert not (tmp_path / "implicit" / "submission").exists()
    explicit = finetune_argv(suite / "model", tmp_path / "explicit", flags + " --do_train --do_predict", data_dir=glue)
    assert main(explicit) == 2
    assert "RTE/test.tsv: missing" in capsys.readouterr().err


def test_non_empty_output_dir_needs_overwrite(suite, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = finetune_argv(suite / "model", out, "--task_name rte --max_steps 1", data_dir=suite / "glue")
    assert main(argv) == 2
    assert "use --overwrite_output_dir" in capsys.readouterr().err
    assert main(argv + ["--overwrite_output_dir", "--quiet"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # only our own files are replaced


def test_wandb_logging_is_offline_by_default(suite, tmp_path, monkeypatch):
    fake = install_fake_wandb(monkeypatch)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    set_wandb_credentials(monkeypatch, tmp_path)  # credentials alone do not make it go online
    flags = "--task_name rte --max_steps 2 --eval_steps 1 --logging_steps 1 --seeds 3 --wandb --run_name demo --quiet"
    argv = finetune_argv(suite / "model", tmp_path / "o", flags, data_dir=suite / "glue")
    assert main(argv) == 0
    assert fake.modes == ["offline"]
    (run,) = fake.runs
    assert (run.init_kwargs["name"], run.init_kwargs["config"]["seed"], run.finished) == ("demo-rte-seed3", 3, True)
    logged = [values for _, values in run.logged]
    assert any("train/loss" in v for v in logged) and any("eval/accuracy" in v for v in logged)


def test_a_failed_online_wandb_start_falls_back_to_offline(suite, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    fake = install_fake_wandb(monkeypatch, fail_online=True)
    flags = "--task_name rte --max_steps 1 --seeds 3 4 --report_to wandb --quiet"
    argv = finetune_argv(suite / "model", tmp_path / "o", flags, data_dir=suite / "glue")
    assert main(argv) == 0
    assert fake.modes == ["online", "offline", "online", "offline"]
    assert [run.init_kwargs["name"] for run in fake.runs] == ["o-rte-seed3", "o-rte-seed4"]
    assert all(run.finished and run.logged for run in fake.runs)
