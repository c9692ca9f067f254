"""`sharebert finetune`: fine-tune a ShareBERT model folder on GLUE tasks.

For each task and seed: load the folder as a sequence classifier (a pretraining folder loses its MLM
head and gains a classifier initialized from the seed), train with AdamW and the polynomial schedule,
evaluate every `eval_steps` and keep the best weights, then evaluate them on every dev split, save
them as a model folder and predict the test split in GLUE's submission format.

OUTPUT_DIR/
  finetune_config.json          the settings of the call
  metrics.jsonl                 one line per event: "train" (loss, lr, epoch), "eval" (selection split
                                metrics, score, best) and "final" (dev metrics, score, train_seconds)
  eval_results.json, summary.md every metric per task and seed, medians and spreads, the GLUE average
  submission/CoLA.tsv ...       per task, the test predictions of its best-on-dev seed (AX.tsv with MNLI)
  <task>/seed-<n>/              model/ (best checkpoint), predictions/, result.json (written last),
                                checkpoint.pt while training (resume point, every save_steps steps)
A rerun into the same folder skips finished (task, seed) runs and resumes interrupted ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import file_error
from ...fileio import read_json, write_bytes_atomic, write_json_atomic
from ...tokenization import bert_tokenizer, read_vocab, special_ids
from ..metrics import METRICS_FILE, MetricsFile, start_wandb
from ..model.io import CONFIG_FILE as MODEL_CONFIG_FILE
from ..model.io import MODEL_DIR, VOCAB_FILE, recorded_lowercase
from . import glue
from .config import FinetuneConfig
from .glue_metrics import predictions_from_logits, task_score
from .loop import (
    CHECKPOINT_FILE,
    FineTuner,
    Numerics,
    TaskData,
    choose_numerics,
    evaluate,
    lr_factor,
    make_plan,
    predict_logits,
)
from .report import build_report, write_report

__all__ = [
    "FineTuner",
    "FinetuneConfig",
    "choose_numerics",
    "cpu_threads",
    "finetune",
    "load_task_data",
    "load_tokenizer",
    "lr_factor",
    "make_plan",
]

log = logging.getLogger(__name__)

CONFIG_FILE = "finetune_config.json"
SUBMISSION_DIR = "submission"
RUN_RESULT_FILE = "result.json"
PREDICTIONS_DIR = "predictions"
SMALL_MODEL_HIDDEN = 512  # narrower models train on one CPU thread unless --cpu_threads says otherwise


# ---------------------------------------------------------------- model folder and tokenizer
def resolve_lowercase(config: FinetuneConfig) -> bool:
    """--do_lower_case / --cased, else the model folder's setting, else uncased (ShareBERT's vocab)."""
    if config.lowercase is not None:
        return config.lowercase
    found = recorded_lowercase(config.model_name_or_path)
    return True if found is None else found


def load_tokenizer(config: FinetuneConfig):
    """The fast WordPiece tokenizer of the model folder's vocab.txt, and the [PAD] id."""
    vocab_path = config.model_name_or_path / VOCAB_FILE
    if not vocab_path.exists():
        raise file_error(vocab_path, "missing: the model folder must carry the vocab it was trained with")
    lowercase = resolve_lowercase(config)
    log.info("tokenizer: %s (%s)", vocab_path, "uncased" if lowercase else "cased")
    tokenizer = bert_tokenizer(vocab_path, lowercase, max_length=config.max_seq_length)
    return tokenizer, special_ids(read_vocab(vocab_path)).pad


def model_shape(config: FinetuneConfig) -> dict:
    """hidden_size and max_position_embeddings of the model folder, checked against the settings."""
    from ..model.config import ShareBertConfig

    path = config.model_name_or_path / MODEL_CONFIG_FILE
    model = ShareBertConfig.from_json_file(path)
    if config.max_seq_length > model.max_position_embeddings:
        raise file_error(
            path,
            f"max_position_embeddings={model.max_position_embeddings} is below "
            f"--max_seq_length {config.max_seq_length}",
        )
    return {"hidden_size": model.hidden_size, "max_position_embeddings": model.max_position_embeddings}


def cpu_threads(config: FinetuneConfig) -> int:
    """Threads for CPU training: --cpu_threads, else one for a narrow model, else torch's default.

    A narrow model's matmuls take microseconds, less than waking a second thread; on a loaded
    2-core machine the tiny preset fine-tuned the demo task in 13 s on one thread and 124 s on two.
    """
    if config.cpu_threads:
        return config.cpu_threads
    return 1 if model_shape(config)["hidden_size"] < SMALL_MODEL_HIDDEN else torch.get_num_threads()


# ---------------------------------------------------------------- data of one task
@dataclass(frozen=True)
class SplitPlan:
    """The splits of a task that a call reads: train, the dev splits it evaluates, the test splits it predicts."""

    train: bool
    dev: tuple[str, ...]
    test: tuple[str, ...]
    skipped: tuple[str, ...]  # test splits the data lacks, which this call may do without

    @property
    def required(self) -> tuple[str, ...]:
        return ("train",) * self.train + self.dev + self.test


def plan_splits(config: FinetuneConfig, task: glue.GlueTask, source) -> SplitPlan:
    if config.do_eval:
        dev = tuple(task.dev_splits)
    elif config.do_train and config.evaluation_strategy != "no":
        dev = (task.selection_split,)  # picks the best checkpoint even without --do_eval (as HF does)
    else:
        dev = ()
    test, skipped = [], []
    for t in task.test_splits if config.do_predict else ():
        if source.has(task, t.split) or not (t.optional or config.predict_optional):
            test.append(t.split)
        elif not t.optional:
            skipped.append(t.split)
    return SplitPlan(config.do_train, dev, tuple(test), tuple(skipped))


def check_task_data(config: FinetuneConfig, source) -> None:
    """Every split the call needs is there, before anything is written (the error names the missing file)."""
    for name in config.task_names:
        task = glue.GLUE_TASKS[name]
        for split in plan_splits(config, task, source).required:
            if not source.has(task, split):
                source.read(task, split)  # raises the error that names the missing file


def load_task_data(config: FinetuneConfig, task: glue.GlueTask, source, tokenizer) -> TaskData:
    def encoded(split: str, limit: int | None) -> glue.EncodedSplit:
        return glue.encode_split(tokenizer, source.read(task, split).head(limit))

    plan = plan_splits(config, task, source)
    for split in plan.skipped:
        log.warning("%s: no %s split in %s: no submission file for it", task.folder, split, source.describe())
    train = encoded("train", config.max_train_samples) if plan.train else None
    dev = {s: encoded(s, config.max_eval_samples) for s in plan.dev}
    test = {s: encoded(s, config.max_predict_samples) for s in plan.test}
    return TaskData(task, train, dev, test)


# ---------------------------------------------------------------- wandb: one run per (task, seed)
def start_run_wandb(config: FinetuneConfig, task: str, seed: int):
    name = f"{config.run_name or config.output_dir.name}-{task}-seed{seed}"
    run_config = {**config.to_dict(), "task": task, "seed": seed}
    return start_wandb(config.wandb_project, name, config.output_dir, run_config, group=config.run_name)


def wandb_values(record: dict) -> dict:
    """What wandb logs of a metrics.jsonl record: its numbers but step and seed, named "<event>/<key>"."""
    numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in ("step", "seed")}
    return {f"{record['event']}/{k}": v for k, v in numbers.items()}


# ---------------------------------------------------------------- one run
def run_dir_of(config: FinetuneConfig, task: str, seed: int) -> Path:
    return config.output_dir / task / f"seed-{seed}"


def finished_run(config: FinetuneConfig, run_dir: Path) -> dict | None:
    """The result of a finished run with the same settings; None when there is none."""
    path = run_dir / RUN_RESULT_FILE
    if not path.exists():
        return None
    result = read_json(path)
    if result.get("settings") != config.run_settings():
        raise file_error(path, "a finished run of other settings: use --overwrite_output_dir or another --output_dir")
    return result


def run_one(
    config: FinetuneConfig, data: TaskData, seed: int, numerics: Numerics, pad_id: int, metrics_log: MetricsFile
) -> dict:
    """Train (maybe), evaluate (maybe) and predict (maybe) one seed of one task; result.json comes last."""
    from ..model.modeling import load_model_folder

    task = data.task
    run_dir = run_dir_of(config, task.name, seed)
    done = finished_run(config, run_dir)
    if done is not None:
        log.info("%s seed %d: already finished in %s", task.folder, seed, run_dir)
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.wandb:
        metrics_log.mirror_to(start_run_wandb(config, task.name, seed))
    result = {
        "task": task.name,
        "seed": seed,
        "settings": config.run_settings(),
        "best_step": None,
        "examples": {
            "train": len(data.train) if data.train else 0,
            **{s: len(d) for s, d in {**data.dev, **data.test}.items()},
        },
    }
    trainer, seconds = None, 0.0
    devices = [numerics.device] if numerics.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # dropout draws from the global generator; everything else has its own
        model = load_model_folder(
            config.model_name_or_path,
            task="sequence-classification",
            num_labels=task.num_labels,
            seed=seed,
            device=numerics.device,
        )
        if config.do_train:
            trainer = FineTuner(model, config, data, seed, numerics, pad_id, run_dir, metrics_log)
            state = trainer.train()
            seconds = state.train_seconds
            result.update(
                best_step=state.best_step,
                steps=state.step,
                total_steps=trainer.plan.total_steps,
                history=state.history,
                skipped_steps=state.skipped_steps,
            )
            save_best_model(model, config, run_dir)
        if config.do_eval:
            result["metrics"] = evaluate(model, task, data.dev, config.per_device_eval_batch_size, numerics, pad_id)
            result["score"] = task_score(task, result["metrics"])
        result["predictions"] = write_predictions(model, data, run_dir, config, numerics, pad_id)
    write_json_atomic(run_dir / RUN_RESULT_FILE, result)  # last: the run is finished
    if trainer is not None:
        trainer.remove_checkpoint()
    metrics_log.write(
        {
            "event": "final",
            "task": task.name,
            "seed": seed,
            "step": result.get("steps", 0),
            "score": result.get("score"),
            "train_seconds": round(seconds, 3),
            **{f"{s}/{m}": v for s, ms in result.get("metrics", {}).items() for m, v in ms.items()},
        }
    )
    metrics_log.finish_wandb()
    return result


def save_best_model(model, config: FinetuneConfig, run_dir: Path) -> None:
    from ..model.modeling import save_model_folder

    vocab = config.model_name_or_path / VOCAB_FILE
    # The casing goes with the weights, so that using the folder later tokenizes as training did.
    save_model_folder(model, run_dir / MODEL_DIR, vocab, lowercase=resolve_lowercase(config))


def write_predictions(
    model, data: TaskData, run_dir: Path, config: FinetuneConfig, numerics: Numerics, pad_id: int
) -> dict[str, str]:
    written = {}
    for split, encoded in data.test.items():
        logits = predict_logits(model, encoded, config.per_device_eval_batch_size, numerics, pad_id)
        name = data.task.split_file_name(split)
        glue.write_submission(
            run_dir / PREDICTIONS_DIR / name, data.task, encoded.data, predictions_from_logits(data.task, logits)
        )
        written[name] = f"{PREDICTIONS_DIR}/{name}"
    return written


# ---------------------------------------------------------------- the call
def prepare_output_dir(config: FinetuneConfig) -> None:
    out = config.output_dir
    if out.exists() and not out.is_dir():
        raise file_error(out, "output_dir exists and is not a folder")
    ours = (out / CONFIG_FILE).exists()
    if out.exists() and any(out.iterdir()) and not ours and not config.overwrite_output_dir:
        raise file_error(out, "output_dir exists and is not empty: use --overwrite_output_dir (or another folder)")
    out.mkdir(parents=True, exist_ok=True)
    run_dirs = [run_dir_of(config, task, seed) for task in config.task_names for seed in config.seeds]
    if config.overwrite_output_dir:
        for run_dir in run_dirs:
            (run_dir / RUN_RESULT_FILE).unlink(missing_ok=True)
            (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        (out / METRICS_FILE).unlink(missing_ok=True)
    else:
        for run_dir in run_dirs:
            finished_run(config, run_dir)  # refuse results of other settings before anything is written
    write_json_atomic(out / CONFIG_FILE, config.to_dict())


def finetune(config: FinetuneConfig) -> dict:
    """Fine-tune, evaluate and predict every task and seed of `config`; return eval_results.json's content."""
    source = glue.open_source(config.data_dir, config.dataset_name)
    numerics = choose_numerics(config.device, config.precision)
    model_shape(config)  # a bad model folder or too long --max_seq_length stops here, before any output
    tokenizer, pad_id = load_tokenizer(config)
    check_task_data(config, source)
    prepare_output_dir(config)
    log.info(
        "fine-tuning on %s (%s), tasks %s, seeds %s",
        numerics.device,
        numerics.precision,
        ", ".join(config.task_names),
        ", ".join(map(str, config.seeds)),
    )
    metrics_log = MetricsFile(config.output_dir / METRICS_FILE, wandb_values=wandb_values)
    runs: dict[str, list[dict]] = {}
    threads_before = torch.get_num_threads()
    try:
        if numerics.device.type == "cpu":
            torch.set_num_threads(cpu_threads(config))
        for name in config.task_names:
            task = glue.GLUE_TASKS[name]
            data = load_task_data(config, task, source, tokenizer)
            runs[name] = [run_one(config, data, seed, numerics, pad_id, metrics_log) for seed in config.seeds]
            copy_submission(config, task, runs[name])
    finally:
        torch.set_num_threads(threads_before)
        metrics_log.close()
    report = build_report(config, runs, numerics)
    write_report(config.output_dir, report)
    return report


def copy_submission(config: FinetuneConfig, task: glue.GlueTask, runs: list[dict]) -> None:
    """submission/<file>.tsv from the run with the best dev score (the first seed without dev scores).

    The chosen run is marked with "submission": true for the report.
    """
    with_predictions = [r for r in runs if r.get("predictions")]
    if not with_predictions:
        return
    chosen = max(with_predictions, key=lambda r: r.get("score", float("-inf")))
    run_dir = run_dir_of(config, task.name, chosen["seed"])
    for name, rel in chosen["predictions"].items():
        source = run_dir / rel
        if not source.exists():
            raise file_error(source, "listed in result.json but missing: rerun with --overwrite_output_dir")
        (config.output_dir / SUBMISSION_DIR).mkdir(exist_ok=True)
        write_bytes_atomic(config.output_dir / SUBMISSION_DIR / name, source.read_bytes())
    chosen["submission"] = True
