"""The GLUE tasks: what each one reads, how its labels are named, how its predictions are submitted.

Two data sources give the same `GlueSplit` records:
  * `TsvSource`: the original GLUE download (one folder per task with train.tsv, dev.tsv, test.tsv;
    MNLI with dev_matched / dev_mismatched / test_matched / test_mismatched; the diagnostic set in
    diagnostic/diagnostic.tsv). Each task keeps its own columns; quotes are literal (csv.QUOTE_NONE).
  * `HfSource`: Hugging Face `datasets`: a hub name such as `nyu-mll/glue` (downloads), or a local
    folder holding Parquet / Arrow files or a `save_to_disk` folder, per task config.

Split names are Hugging Face's (train, validation, validation_matched, test_matched, ..., and `ax` for
the diagnostic set, which is predicted with the MNLI model). Class ids follow Hugging Face's GLUE
features, so both sources give the same ids for the same label.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError, file_error
from ...fileio import atomic_path

log = logging.getLogger(__name__)

# A bad row in train.tsv is skipped and counted (the old QQP release has a few); in a dev or test
# file it is an error, because metrics and submission row counts depend on every row.
TOLERANT_SPLITS = ("train",)

TSV_FILE_OF_SPLIT = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
    "test": "test.tsv",
    "test_matched": "test_matched.tsv",
    "test_mismatched": "test_mismatched.tsv",
}
# The diagnostic set (AX) is not inside a task folder; the first of these that exists is read.
AX_TSV_PATHS = ("diagnostic/diagnostic.tsv", "AX/test.tsv")
AX_SPLIT = "ax"


@dataclass(frozen=True)
class TsvLayout:
    """Columns of one kind of GLUE TSV file (labelled train/dev files, or unlabelled test files)."""

    text_columns: tuple[str, ...]  # one column (single sentence) or two (sentence pair)
    label_column: str | None = None  # None in test files
    index_column: str | None = None  # the id GLUE's submission format echoes back (test files)
    headerless_columns: tuple[str, ...] | None = None  # names for files without a header row (CoLA)


@dataclass(frozen=True)
class TestSplit:
    split: str
    submission_file: str
    optional: bool = False  # the diagnostic set: predicted when present


@dataclass(frozen=True)
class GlueTask:
    name: str  # our name and the Hugging Face config: "sst2"
    folder: str  # GLUE's spelling and data folder: "SST-2"
    hf_text_columns: tuple[str, ...]
    labelled: TsvLayout
    unlabelled: TsvLayout
    label_names: tuple[str, ...] | None  # the strings in the TSV files and the submission; None: regression
    metrics: tuple[str, ...]  # computed on every dev split
    dev_splits: tuple[str, ...] = ("validation",)
    test_splits: tuple[TestSplit, ...] = ()
    # (split, metric) pairs whose mean is the task's GLUE score (see glue_score in glue_metrics).
    score_parts: tuple[tuple[str, str], ...] = ()
    # Which dev split picks the best checkpoint during training (MNLI: matched only).
    selection_split: str = "validation"

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    def split_file_name(self, split: str) -> str:
        for test in self.test_splits:
            if test.split == split:
                return test.submission_file
        raise KeyError(split)


def _score_parts(metrics: tuple[str, ...], splits: tuple[str, ...] = ("validation",)) -> tuple[tuple[str, str], ...]:
    return tuple((s, m) for s in splits for m in metrics)


BINARY = ("0", "1")
NLI_2 = ("entailment", "not_entailment")
NLI_3 = ("entailment", "neutral", "contradiction")  # the order of Hugging Face's GLUE MNLI ids


def _task_table() -> dict[str, GlueTask]:
    pair = ("sentence1", "sentence2")
    tasks = [
        GlueTask(
            "cola",
            "CoLA",
            ("sentence",),
            labelled=TsvLayout(
                ("sentence",), "label", headerless_columns=("source", "label", "annotation", "sentence")
            ),
            unlabelled=TsvLayout(("sentence",), index_column="index"),
            label_names=BINARY,
            metrics=("mcc",),
            test_splits=(TestSplit("test", "CoLA.tsv"),),
            score_parts=_score_parts(("mcc",)),
        ),
        GlueTask(
            "sst2",
            "SST-2",
            ("sentence",),
            labelled=TsvLayout(("sentence",), "label"),
            unlabelled=TsvLayout(("sentence",), index_column="index"),
            label_names=BINARY,
            metrics=("accuracy",),
            test_splits=(TestSplit("test", "SST-2.tsv"),),
            score_parts=_score_parts(("accuracy",)),
        ),
        GlueTask(
            "mrpc",
            "MRPC",
            pair,
            labelled=TsvLayout(("#1 String", "#2 String"), "Quality"),
            unlabelled=TsvLayout(("#1 String", "#2 String"), index_column="index"),
            label_names=BINARY,
            metrics=("accuracy", "f1"),
            test_splits=(TestSplit("test", "MRPC.tsv"),),
            score_parts=_score_parts(("accuracy", "f1")),
        ),
        GlueTask(
            "qqp",
            "QQP",
            ("question1", "question2"),
            labelled=TsvLayout(("question1", "question2"), "is_duplicate"),
            unlabelled=TsvLayout(("question1", "question2"), index_column="id"),
            label_names=BINARY,
            metrics=("accuracy", "f1"),
            test_splits=(TestSplit("test", "QQP.tsv"),),
            score_parts=_score_parts(("accuracy", "f1")),
        ),
        GlueTask(
            "stsb",
            "STS-B",
            pair,
            labelled=TsvLayout(pair, "score"),
            unlabelled=TsvLayout(pair, index_column="index"),
            label_names=None,
            metrics=("pearson", "spearman"),
            test_splits=(TestSplit("test", "STS-B.tsv"),),
            score_parts=_score_parts(("pearson", "spearman")),
        ),
        GlueTask(
            "mnli",
            "MNLI",
            ("premise", "hypothesis"),
            labelled=TsvLayout(pair, "gold_label"),
            unlabelled=TsvLayout(pair, index_column="index"),
            label_names=NLI_3,
            metrics=("accuracy",),
            dev_splits=("validation_matched", "validation_mismatched"),
            test_splits=(
                TestSplit("test_matched", "MNLI-m.tsv"),
                TestSplit("test_mismatched", "MNLI-mm.tsv"),
                TestSplit(AX_SPLIT, "AX.tsv", optional=True),
            ),
            score_parts=_score_parts(("accuracy",), ("validation_matched", "validation_mismatched")),
            selection_split="validation_matched",
        ),
        GlueTask(
            "qnli",
            "QNLI",
            ("question", "sentence"),
            labelled=TsvLayout(("question", "sentence"), "label"),
            unlabelled=TsvLayout(("question", "sentence"), index_column="index"),
            label_names=NLI_2,
            metrics=("accuracy",),
            test_splits=(TestSplit("test", "QNLI.tsv"),),
            score_parts=_score_parts(("accuracy",)),
        ),
        GlueTask(
            "rte",
            "RTE",
            pair,
            labelled=TsvLayout(pair, "label"),
            unlabelled=TsvLayout(pair, index_column="index"),
            label_names=NLI_2,
            metrics=("accuracy",),
            test_splits=(TestSplit("test", "RTE.tsv"),),
            score_parts=_score_parts(("accuracy",)),
        ),
        GlueTask(
            "wnli",
            "WNLI",
            pair,
            labelled=TsvLayout(pair, "label"),
            unlabelled=TsvLayout(pair, index_column="index"),
            label_names=BINARY,
            metrics=("accuracy",),
            test_splits=(TestSplit("test", "WNLI.tsv"),),
            score_parts=_score_parts(("accuracy",)),
        ),
    ]
    return {t.name: t for t in tasks}


GLUE_TASKS: dict[str, GlueTask] = _task_table()
# `--task_name all`: the order of the GLUE leaderboard.
ALL_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
# The diagnostic set is read with MNLI's columns (sentence1/sentence2 in TSV, premise/hypothesis in HF).
AX_LAYOUT = TsvLayout(("sentence1", "sentence2"), index_column="index")


def _spelling(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


_BY_SPELLING = {_spelling(t.name): t.name for t in GLUE_TASKS.values()}
_BY_SPELLING.update({_spelling(t.folder): t.name for t in GLUE_TASKS.values()})


def resolve_task_names(names: list[str] | tuple[str, ...] | str) -> list[str]:
    """Canonical task names for user spellings: "SST-2", "sst2", "STS-B", "CoLA", "all", "rte,mrpc"."""
    if isinstance(names, str):
        names = [names]
    resolved: list[str] = []
    for raw in names:
        for part in str(raw).split(","):
            part = part.strip()
            if not part:
                continue
            if part.lower() == "all":
                found = list(ALL_TASKS)
            elif _spelling(part) in _BY_SPELLING:
                found = [_BY_SPELLING[_spelling(part)]]
            else:
                known = ", ".join(ALL_TASKS)
                raise ConfigError(f"task_name: unknown GLUE task {part!r} (known: {known}, or all)")
            resolved.extend(t for t in found if t not in resolved)
    if not resolved:
        raise ConfigError("task_name: no task given")
    return resolved


# ---------------------------------------------------------------- records
@dataclass
class GlueSplit:
    """One split of one task: texts, labels (class ids or scores; None when unlabelled) and ids."""

    task: str
    split: str
    origin: str  # the file (or dataset) it came from, for messages
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray | None  # int64 class ids, or float32 scores for STS-B
    index: list[str] = field(default_factory=list)  # the ids the submission file echoes

    def __post_init__(self):
        n = len(self.text_a)
        if self.text_b is not None and len(self.text_b) != n:
            raise ValueError("text_a and text_b differ in length")
        if self.labels is not None and len(self.labels) != n:
            raise ValueError("texts and labels differ in length")
        if not self.index:
            self.index = [str(i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.text_a)

    def head(self, n: int | None) -> GlueSplit:
        """The first n examples (HF's --max_*_samples), or all when n is None."""
        if n is None or n >= len(self):
            return self
        return GlueSplit(
            self.task,
            self.split,
            self.origin,
            self.text_a[:n],
            None if self.text_b is None else self.text_b[:n],
            None if self.labels is None else self.labels[:n],
            self.index[:n],
        )


def _parse_label(task: GlueTask, raw: str):
    """Class id or score of a TSV label string; None when it is not a valid label of the task."""
    raw = raw.strip()
    if task.is_regression:
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    try:
        return task.label_names.index(raw)
    except ValueError:
        return None


# ---------------------------------------------------------------- GLUE TSV files
class TsvSource:
    """The original GLUE layout: DATA_DIR/<Task>/{train,dev,test}.tsv, DATA_DIR/diagnostic/diagnostic.tsv."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise file_error(self.data_dir, "GLUE data folder not found")

    def describe(self) -> str:
        return str(self.data_dir)

    def path(self, task: GlueTask, split: str) -> Path:
        if split == AX_SPLIT:
            for rel in AX_TSV_PATHS:
                if (self.data_dir / rel).exists():
                    return self.data_dir / rel
            return self.data_dir / AX_TSV_PATHS[0]
        if split not in TSV_FILE_OF_SPLIT:
            raise ValueError(f"unknown split {split!r}")
        folder = self._task_folder(task)
        return folder / TSV_FILE_OF_SPLIT[split]

    def _task_folder(self, task: GlueTask) -> Path:
        exact = self.data_dir / task.folder
        if exact.is_dir():
            return exact
        # Some copies spell the folders differently (sst2, STS_B, cola): accept any spelling.
        for child in sorted(self.data_dir.iterdir()):
            if child.is_dir() and _spelling(child.name) in (_spelling(task.folder), _spelling(task.name)):
                return child
        return exact

    def has(self, task: GlueTask, split: str) -> bool:
        return self.path(task, split).is_file()

    def read(self, task: GlueTask, split: str) -> GlueSplit:
        path = self.path(task, split)
        if not path.is_file():
            where = "the GLUE diagnostic set" if split == AX_SPLIT else f"the {split} split of {task.folder}"
            raise file_error(path, f"missing: {where} is expected here (GLUE's TSV layout)")
        if split == AX_SPLIT:
            layout = AX_LAYOUT
        else:
            layout = task.unlabelled if split.startswith("test") else task.labelled
        return read_glue_tsv(path, task, split, layout)


def read_glue_tsv(path: Path, task: GlueTask, split: str, layout: TsvLayout) -> GlueSplit:
    """Read one GLUE TSV file; a missing column or a bad label or row is an error naming the file."""
    tolerant = split in TOLERANT_SPLITS
    text_a: list[str] = []
    text_b: list[str] | None = [] if len(layout.text_columns) == 2 else None
    labels: list = []
    index: list[str] = []
    skipped: list[int] = []
    try:
        # utf-8-sig: the MRPC files of some GLUE copies start with a byte-order mark.
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = layout.headerless_columns
            first_line = 1
            if header is None:
                header = next(reader, None)
                first_line = 2
                if header is None:
                    raise file_error(path, "empty file (expected a header row)")
            positions = _column_positions(path, header, layout)
            width = len(header)
            for line_no, row in enumerate(reader, first_line):
                if not row or row == [""]:
                    continue
                problem = None
                if len(row) != width:
                    problem = f"{len(row)} tab-separated columns, expected {width}"
                else:
                    label = None
                    if layout.label_column is not None:
                        raw = row[positions["label"]]
                        label = _parse_label(task, raw)
                        if label is None:
                            problem = f"label {raw!r} is not one of {_label_help(task)}"
                if problem is not None:
                    if not tolerant:
                        raise file_error(path, f"line {line_no}: {problem}")
                    skipped.append(line_no)
                    continue
                text_a.append(row[positions["a"]])
                if text_b is not None:
                    text_b.append(row[positions["b"]])
                if layout.label_column is not None:
                    labels.append(label)
                index.append(row[positions["index"]].strip() if "index" in positions else str(len(index)))
    except UnicodeDecodeError as e:
        raise file_error(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise file_error(path, f"not a TSV file ({e})") from None
    if skipped:
        log.warning("%s: skipped %d malformed rows (first at line %d)", path, len(skipped), skipped[0])
    if not text_a:
        raise file_error(path, "no examples")
    label_array = None
    if layout.label_column is not None:
        label_array = np.asarray(labels, dtype=np.float32 if task.is_regression else np.int64)
    return GlueSplit(task.name, split, str(path), text_a, text_b, label_array, index)


def _column_positions(path: Path, header: list[str] | tuple[str, ...], layout: TsvLayout) -> dict[str, int]:
    names = [h.strip() for h in header]
    wanted = {"a": layout.text_columns[0]}
    if len(layout.text_columns) == 2:
        wanted["b"] = layout.text_columns[1]
    if layout.label_column is not None:
        wanted["label"] = layout.label_column
    if layout.index_column is not None:
        wanted["index"] = layout.index_column
    positions = {}
    for key, column in wanted.items():
        if column not in names:
            if key == "index":
                continue  # a test file without ids: rows are numbered from 0 as GLUE does
            raise file_error(path, f"missing column {column!r} (header: {', '.join(names)})")
        positions[key] = names.index(column)
    return positions


def _label_help(task: GlueTask) -> str:
    return "a number" if task.is_regression else "/".join(task.label_names)


# ---------------------------------------------------------------- Hugging Face datasets
HF_SPLIT_FILE_GLOBS = (
    "{split}-*.parquet",
    "{split}.parquet",
    "{split}/*.parquet",
    "{split}-*.arrow",
    "{split}/*.arrow",
)


class HfSource:
    """GLUE through Hugging Face `datasets`: a hub name (downloads) or a local folder.

    A local folder may hold, per task config (cola/, sst2/, mnli/, ax/ ...) or directly:
    Parquet files named like the hub's (`train-00000-of-00001.parquet`, `validation_matched-*.parquet`),
    Arrow files, or a `save_to_disk` DatasetDict (dataset_dict.json).
    """

    def __init__(self, name_or_path: str):
        self.name_or_path = name_or_path
        self.local = Path(name_or_path).exists()
        self._dicts: dict[str, object] = {}

    def describe(self) -> str:
        return self.name_or_path if self.local else f"hub:{self.name_or_path}"

    @staticmethod
    def _config(task: GlueTask, split: str) -> str:
        return "ax" if split == AX_SPLIT else task.name

    def _config_folder(self, config: str) -> Path:
        root = Path(self.name_or_path)
        return root / config if (root / config).is_dir() else root

    def _local_files(self, config: str, split: str) -> list[Path]:
        folder = self._config_folder(config)
        split_name = "test" if split == AX_SPLIT else split
        for pattern in HF_SPLIT_FILE_GLOBS:
            files = sorted(folder.glob(pattern.format(split=split_name)))
            if files:
                return files
        return []

    def _saved_dict(self, config: str):
        folder = self._config_folder(config)
        if not (folder / "dataset_dict.json").exists():
            return None
        if config not in self._dicts:
            import datasets

            try:
                self._dicts[config] = datasets.load_from_disk(str(folder))
            except Exception as e:  # datasets raises many kinds for a damaged folder
                raise file_error(folder, f"cannot load the saved dataset ({e})") from None
        return self._dicts[config]

    def has(self, task: GlueTask, split: str) -> bool:
        if not self.local:
            return True  # the hub's GLUE has every split, the diagnostic set included
        config = self._config(task, split)
        saved = self._saved_dict(config)
        if saved is not None:
            return ("test" if split == AX_SPLIT else split) in saved
        return bool(self._local_files(config, split))

    def read(self, task: GlueTask, split: str) -> GlueSplit:
        config = self._config(task, split)
        columns, origin = self._load_columns(task, config, split)
        return _split_from_columns(task, split, origin, columns)

    def _load_columns(self, task: GlueTask, config: str, split: str) -> tuple[dict, str]:
        split_name = "test" if split == AX_SPLIT else split
        if not self.local:
            return self._load_hub(config, split_name)
        saved = self._saved_dict(config)
        if saved is not None:
            folder = self._config_folder(config)
            if split_name not in saved:
                raise file_error(folder, f"missing split {split_name!r} (has: {', '.join(saved)})")
            return saved[split_name].to_dict(), f"{folder}[{split_name}]"
        files = self._local_files(config, split)
        if not files:
            folder = self._config_folder(config)
            raise file_error(folder, f"missing: no Parquet or Arrow files for split {split_name!r} of {config}")
        return _read_table_files(files), str(files[0] if len(files) == 1 else files[0].parent)

    def _load_hub(self, config: str, split_name: str) -> tuple[dict, str]:
        import datasets

        origin = f"{self.name_or_path}/{config}[{split_name}]"
        try:
            ds = datasets.load_dataset(self.name_or_path, config, split=split_name)
        except Exception as e:  # network, unknown name or config, missing split
            raise DataError(f"{origin}: cannot load from the Hugging Face hub ({type(e).__name__}: {e})") from None
        return ds.to_dict(), origin


def _read_table_files(files: list[Path]) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in files:
        try:
            if path.suffix == ".parquet":
                tables.append(pq.read_table(path))
            else:
                with pa.memory_map(str(path)) as source:
                    try:
                        tables.append(pa.ipc.open_stream(source).read_all())
                    except pa.ArrowInvalid:
                        source.seek(0)
                        tables.append(pa.ipc.open_file(source).read_all())
        except (pa.ArrowException, OSError) as e:
            raise file_error(path, f"cannot read ({e})") from None
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as e:
        raise file_error(files[0].parent, f"files of one split disagree ({e})") from None
    return table.to_pydict()


def _split_from_columns(task: GlueTask, split: str, origin: str, columns: dict) -> GlueSplit:
    names = ("premise", "hypothesis") if split == AX_SPLIT else task.hf_text_columns
    for name in names:
        if name not in columns:
            raise DataError(f"{origin}: missing column {name!r} (columns: {', '.join(columns)})")
    text_a = [str(t) for t in columns[names[0]]]
    text_b = [str(t) for t in columns[names[1]]] if len(names) == 2 else None
    if not text_a:
        raise DataError(f"{origin}: no examples")
    index = [str(i) for i in columns["idx"]] if "idx" in columns else []
    labels = None
    if "label" in columns and not (split.startswith("test") or split == AX_SPLIT):
        labels = _hf_labels(task, origin, columns["label"])
    elif not (split.startswith("test") or split == AX_SPLIT):
        raise DataError(f"{origin}: missing column 'label' (columns: {', '.join(columns)})")
    return GlueSplit(task.name, split, origin, text_a, text_b, labels, index)


def _hf_labels(task: GlueTask, origin: str, raw: list) -> np.ndarray:
    if task.is_regression:
        labels = np.asarray(raw, dtype=np.float32)
        if not np.isfinite(labels).all():
            raise DataError(f"{origin}: a label is not a finite number")
        return labels
    labels = np.asarray(raw)
    if labels.dtype.kind not in "iu":
        raise DataError(f"{origin}: labels must be class ids 0..{task.num_labels - 1}, got {labels.dtype} values")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= task.num_labels)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{origin}: row {row}: label {labels[row]} is not a class id 0..{task.num_labels - 1}")
    return labels


def open_source(data_dir: str | Path | None = None, dataset_name: str | None = None) -> TsvSource | HfSource:
    if (data_dir is None) == (dataset_name is None):
        raise ConfigError("give exactly one data source: --data_dir (GLUE TSV folder) or --dataset_name")
    return TsvSource(data_dir) if data_dir is not None else HfSource(dataset_name)


# ---------------------------------------------------------------- submission files
SUBMISSION_HEADER = "index\tprediction\n"
STSB_RANGE = (0.0, 5.0)


def prediction_labels(task: GlueTask, predictions: np.ndarray) -> list[str]:
    """The strings GLUE's server expects: label names, or STS-B scores clipped to [0, 5]."""
    predictions = np.asarray(predictions)
    if task.is_regression:
        clipped = np.clip(predictions.astype(np.float64), *STSB_RANGE)
        return [f"{v:.3f}" for v in clipped]
    return [task.label_names[int(p)] for p in predictions]


def write_submission(path: str | Path, task: GlueTask, split: GlueSplit, predictions: np.ndarray) -> Path:
    """Write one GLUE submission file (index<TAB>prediction, one row per test example), atomically."""
    path = Path(path)
    if len(predictions) != len(split):
        raise ValueError(f"{len(predictions)} predictions for {len(split)} examples of {split.origin}")
    lines = [SUBMISSION_HEADER]
    lines += [f"{i}\t{p}\n" for i, p in zip(split.index, prediction_labels(task, predictions))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------- model inputs
ENCODE_CHUNK = 8192  # examples per tokenizer call: bounded memory for the tokenizer's temporary objects


@dataclass
class EncodedSplit:
    """Token ids of a split, flat with offsets (no padding stored); padding happens per batch."""

    data: GlueSplit
    input_ids: np.ndarray  # int32, all examples concatenated
    token_type_ids: np.ndarray  # int8, same length
    offsets: np.ndarray  # int64 [n + 1]: example i is [offsets[i], offsets[i + 1])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def labels(self) -> np.ndarray | None:
        return self.data.labels

    def padded(self, rows: np.ndarray, pad_id: int, multiple: int = 1) -> dict[str, np.ndarray]:
        """input_ids, token_type_ids, attention_mask [B, L] (L = longest row, rounded up to `multiple`)."""
        lengths = self.lengths[rows]
        width = int(lengths.max())
        width = -(-width // multiple) * multiple
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, (r, n) in enumerate(zip(rows, lengths)):
            start = self.offsets[r]
            ids[i, :n] = self.input_ids[start : start + n]
            types[i, :n] = self.token_type_ids[start : start + n]
            mask[i, :n] = 1
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def encode_split(tokenizer, split: GlueSplit) -> EncodedSplit:
    """[CLS] a [SEP] (b [SEP]) with segment ids, truncated by the tokenizer's max_length."""
    ids, types, lengths = [], [], []
    for start in range(0, len(split), ENCODE_CHUNK):
        stop = start + ENCODE_CHUNK
        texts = split.text_a[start:stop]
        if split.text_b is not None:
            texts = list(zip(texts, split.text_b[start:stop]))
        for enc in tokenizer.encode_batch(texts):
            ids.append(np.asarray(enc.ids, dtype=np.int32))
            types.append(np.asarray(enc.type_ids, dtype=np.int8))
            lengths.append(len(enc.ids))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return EncodedSplit(split, np.concatenate(ids), np.concatenate(types), offsets)
