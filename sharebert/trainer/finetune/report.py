"""eval_results.json and summary.md of `sharebert finetune`: per-task medians and spreads, the GLUE average.

Small GLUE tasks are noisy (RTE, MRPC, CoLA, STS-B move by points between seeds), so every number is
reported as the median over seeds with its min-max range and standard deviation.
"""

from __future__ import annotations

import numpy as np

from ...fileio import write_bytes_atomic, write_json_atomic
from .glue import GLUE_TASKS
from .glue_metrics import METRIC_TITLES, glue_average

REPORT_FORMAT_VERSION = 1
RESULTS_FILE = "eval_results.json"
SUMMARY_FILE = "summary.md"
GLUE_RULE = (
    "GLUE leaderboard rule: a task's score is the mean of its metrics (CoLA: MCC; SST-2, QNLI, RTE, WNLI: "
    "accuracy; MRPC, QQP: mean of accuracy and F1; STS-B: mean of Pearson and Spearman; MNLI: mean of "
    "matched and mismatched accuracy); the GLUE average is the unweighted mean of the task scores, each the "
    "median over seeds. Dev sets, not the test server."
)
SPLIT_PREFIX = {"validation_matched": "m ", "validation_mismatched": "mm "}


def spread(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {
        "median": float(np.median(a)),
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "values": [float(v) for v in a],
    }


def task_entry(name: str, runs: list[dict]) -> dict:
    task = GLUE_TASKS[name]
    entry = {"glue_name": task.folder, "runs": [{k: v for k, v in r.items() if k != "settings"} for r in runs]}
    scored = [r for r in runs if "score" in r]
    if scored:
        entry["score"] = spread([r["score"] for r in scored])
        entry["metrics"] = {
            f"{split}/{metric}": spread([r["metrics"][split][metric] for r in scored])
            for split in task.dev_splits
            for metric in task.metrics
        }
    chosen = [r["seed"] for r in runs if r.get("submission")]
    if chosen:
        entry["submission_seed"] = chosen[0]
    return entry


def build_report(config, runs: dict[str, list[dict]], numerics) -> dict:
    tasks = {name: task_entry(name, task_runs) for name, task_runs in runs.items()}
    scores = {name: t["score"]["median"] for name, t in tasks.items() if "score" in t}
    report = {
        "format_version": REPORT_FORMAT_VERSION,
        "model": str(config.model_name_or_path),
        "device": str(numerics.device),
        "precision": numerics.precision,
        "seeds": list(config.seeds),
        "tasks": tasks,
        "settings": config.to_dict(),
    }
    if scores:
        report["glue"] = {"rule": GLUE_RULE, "tasks": list(scores), "average": glue_average(scores)}
        without_wnli = {k: v for k, v in scores.items() if k != "wnli"}
        if "wnli" in scores and without_wnli:
            # WNLI's dev set is adversarial to its train set; BERT-style papers leave it out.
            report["glue"]["average_without_wnli"] = glue_average(without_wnli)
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _metrics_cell(name: str, entry: dict) -> str:
    task = GLUE_TASKS[name]
    parts = []
    for split in task.dev_splits:
        for metric in task.metrics:
            value = entry["metrics"][f"{split}/{metric}"]["median"]
            parts.append(f"{SPLIT_PREFIX.get(split, '')}{METRIC_TITLES[metric]} {_pct(value)}")
    return " / ".join(parts)


def render_summary(report: dict) -> str:
    seeds = report["seeds"]
    lines = [
        "# GLUE fine-tuning results (dev sets)",
        "",
        f"Model `{report['model']}`, {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), "
        f"{report['device']} ({report['precision']}). Numbers are x100; medians over seeds.",
        "",
        "| Task | Dev metrics | Score | Min-max | Std | Best steps | Test file from seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["tasks"].items():
        best_steps = ", ".join(str(r.get("best_step")) for r in entry["runs"] if r.get("best_step") is not None) or "-"
        submission = str(entry.get("submission_seed", "-"))
        if "score" not in entry:
            lines.append(f"| {entry['glue_name']} | not evaluated | - | - | - | {best_steps} | {submission} |")
            continue
        s = entry["score"]
        lines.append(
            f"| {entry['glue_name']} | {_metrics_cell(name, entry)} | {_pct(s['median'])} | "
            f"{_pct(s['min'])}-{_pct(s['max'])} | {_pct(s['std'])} | {best_steps} | {submission} |"
        )
    glue = report.get("glue")
    if glue:
        lines.append(f"| **GLUE average** ({len(glue['tasks'])} tasks) | | **{_pct(glue['average'])}** | | | | |")
        if "average_without_wnli" in glue:
            lines.append(f"| GLUE average without WNLI | | {_pct(glue['average_without_wnli'])} | | | | |")
        lines += ["", glue["rule"]]
    return "\n".join(lines) + "\n"


def write_report(output_dir, report: dict) -> str:
    """Write eval_results.json and summary.md (atomically); return the summary text."""
    text = render_summary(report)
    write_json_atomic(output_dir / RESULTS_FILE, report)
    write_bytes_atomic(output_dir / SUMMARY_FILE, text.encode("utf-8"))
    return text
