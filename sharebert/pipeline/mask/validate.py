"""Checks of pretraining sample files, shared by `sharebert mask` and `sharebert mask --validate-only`.

Every rule is a vectorized test over a slab of rows that yields the offending rows; a file's problems
are reported per rule with the first few rows and a count. The same pass gathers the sample
statistics (SampleCounts). Folders written by the reference pipeline (no manifest.json) are checked
against the vocab and settings given on the command line. docs/mask.md lists the rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError, file_error
from ...fileio import sha256_file
from ...tokenization import SpecialIds, read_vocab, replacement_token_ids, special_ids
from .. import formats
from ..parallel import default_workers, map_ordered
from .masking import predictions_per_row

log = logging.getLogger(__name__)

ROWS_LISTED = 5  # offending rows named per rule and file; the rest are counted
SLAB_ROWS = 8 * formats.HDF5_CHUNK_ROWS  # rows read and checked at once
REFERENCE_MASKED_LM_PROB = 0.15  # assumed for folders without a manifest unless given


@dataclass(frozen=True)
class SampleRules:
    """What a valid sample file looks like. None: taken from the file itself."""

    vocab_size: int
    special: SpecialIds
    masked_lm_prob: float
    max_seq_length: int | None = None
    max_predictions_per_seq: int | None = None
    nsp: bool | None = None
    whole_word_masking: bool = False
    # bool [V]: ids a random replacement may be (sharebert draws only non-special tokens); None: any id
    replacement_allowed: np.ndarray | None = None


@dataclass
class Problem:
    """One broken rule in one file, with the first offending rows and how many rows break it."""

    file: str
    what: str
    rows: list[int] = field(default_factory=list)
    count: int = 0

    def __str__(self) -> str:
        if not self.count:
            return f"{self.file}: {self.what}"
        listed = ", ".join(str(r) for r in self.rows)
        more = f" and {self.count - len(self.rows)} more" if self.count > len(self.rows) else ""
        noun = "row" if self.count == 1 else "rows"
        return f"{self.file}: {noun} {listed}{more}: {self.what}"


@dataclass
class SampleCounts:
    """Additive counters over samples; summary() turns them into the reported statistics."""

    samples: int = 0
    real_tokens: int = 0
    short_samples: int = 0  # fewer real tokens than max_seq_length
    masked: int = 0
    masked_as_mask: int = 0
    masked_kept: int = 0
    masked_random: int = 0
    random_next: int = 0  # NSP label 1

    def add(self, other: SampleCounts) -> SampleCounts:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> dict:
        n, m = max(self.samples, 1), max(self.masked, 1)
        return {
            "samples": self.samples,
            "real_tokens": self.real_tokens,
            "mean_real_tokens": round(self.real_tokens / n, 4),
            "short_fraction": round(self.short_samples / n, 6),
            "masked": self.masked,
            "mean_masked": round(self.masked / n, 4),
            "mask_fraction": round(self.masked_as_mask / m, 6),
            "keep_fraction": round(self.masked_kept / m, 6),
            "random_fraction": round(self.masked_random / m, 6),
            "random_next_fraction": round(self.random_next / n, 6),
        }


def describe_summary(stats: dict) -> str:
    text = (
        f"{stats['samples']:,} samples, {stats['mean_real_tokens']:.1f} real tokens each, "
        f"{100 * stats['short_fraction']:.1f}% short, {stats['mean_masked']:.2f} masked each "
        f"([MASK]/keep/random {100 * stats['mask_fraction']:.1f}/{100 * stats['keep_fraction']:.1f}/"
        f"{100 * stats['random_fraction']:.1f}%)"
    )
    if stats.get("random_next_fraction"):
        text += f", {100 * stats['random_next_fraction']:.1f}% random next"
    return text


# ---------------------------------------------------------------- row checks (vectorized)
def find_bad_rows(arrays: dict[str, np.ndarray], rules: SampleRules, nsp: bool) -> dict[str, np.ndarray]:
    """rule description -> bool [n] marking the rows that break it."""
    ids, mask, seg = arrays[formats.INPUT_IDS], arrays[formats.INPUT_MASK], arrays[formats.SEGMENT_IDS]
    pos, lab = arrays[formats.MASKED_LM_POSITIONS], arrays[formats.MASKED_LM_IDS]
    n, seq_len = ids.shape
    sp, vocab_size = rules.special, rules.vocab_size
    col = np.arange(seq_len)[None, :]
    rows = np.arange(n)[:, None]
    bad: dict[str, np.ndarray] = {}

    mask16 = mask.astype(np.int16)
    length = (mask16 == 1).sum(axis=1)
    prefix = ((mask16 == 0) | (mask16 == 1)).all(axis=1) & (np.diff(mask16, axis=1) <= 0).all(axis=1)
    bad["input_mask is not a prefix of ones covering at least [CLS] token [SEP]"] = ~prefix | (length < 3)
    real = col < length[:, None]
    last = np.maximum(length - 1, 0)

    bad[f"input_ids outside the vocabulary [0, {vocab_size})"] = ((ids < 0) | (ids >= vocab_size)).any(axis=1)
    bad["input_ids[0] is not [CLS]"] = ids[:, 0] != sp.cls
    bad["input_ids at the last real position is not [SEP]"] = ids[np.arange(n), last] != sp.sep
    bad["padding is not [PAD]"] = ((ids != sp.pad) & ~real).any(axis=1)

    seg16 = seg.astype(np.int16)
    bad["segment_ids are not 0/1"] = ((seg16 != 0) & (seg16 != 1)).any(axis=1)
    bad["segment_ids are not 0 on padding"] = ((seg16 != 0) & ~real).any(axis=1)
    middle_sep = np.full(n, -1)
    if nsp:
        b_first = np.argmax(seg16 == 1, axis=1)
        switches_once = (np.diff(np.where(real, seg16, 1), axis=1) >= 0).all(axis=1)
        well_placed = (
            (b_first >= 3) & (b_first <= length - 2) & (ids[np.arange(n), np.maximum(b_first - 1, 0)] == sp.sep)
        )
        bad["segment_ids do not switch 0 -> 1 once, right after a middle [SEP]"] = ~(switches_once & well_placed)
        middle_sep = b_first - 1
    else:
        bad["segment_ids are not all 0 (samples without NSP)"] = (seg16 != 0).any(axis=1)

    used = pos > 0
    count = used.sum(axis=1)
    zero_padded = ~(used[:, 1:] & ~used[:, :-1]).any(axis=1) & (pos >= 0).all(axis=1)
    increasing = ~((pos[:, 1:] <= pos[:, :-1]) & used[:, 1:]).any(axis=1)
    bad["masked_lm_positions are not strictly increasing, then 0"] = ~(zero_padded & increasing)
    bad["masked_lm_positions outside the text (past the last token or on the final [SEP])"] = (
        used & (pos >= last[:, None])
    ).any(axis=1)
    if nsp:
        bad["masked_lm_positions on the middle [SEP]"] = (used & (pos == middle_sep[:, None])).any(axis=1)
    label_out_of_vocab = (lab < 0) | (lab >= vocab_size)
    bad[f"masked_lm_ids outside the vocabulary [0, {vocab_size})"] = (used & label_out_of_vocab).any(axis=1)
    specials = np.array([sp.pad, sp.cls, sp.sep, sp.mask])
    bad["masked_lm_ids holds [PAD], [CLS], [SEP] or [MASK]"] = (used & np.isin(lab, specials)).any(axis=1)
    bad["unused masked_lm_ids slots are not 0"] = (~used & (lab != 0)).any(axis=1)

    candidates = np.maximum(length - 2 - int(nsp), 0)
    expected = predictions_per_row(length, rules.masked_lm_prob, pos.shape[1], candidates)
    if rules.whole_word_masking:
        bad["more masked positions than min(M, max(1, round(length * p)))"] = count > expected
    else:
        bad["masked position count is not min(M, max(1, round(length * p)))"] = count != expected

    safe_pos = np.clip(pos, 0, seq_len - 1)
    shown = np.take_along_axis(ids, safe_pos, axis=1)
    if rules.replacement_allowed is not None:
        table = rules.replacement_allowed
        replaced = used & (shown != sp.mask) & (shown != lab)
        allowed = table[np.clip(shown, 0, len(table) - 1)] & (shown >= 0) & (shown < len(table))
        bad["a random replacement is a special token"] = (replaced & ~allowed).any(axis=1)
    masked_at = np.zeros((n, seq_len), dtype=bool)
    masked_at[rows, safe_pos] = used
    masked_at[:, 0] = False
    interior = real & (col > 0) & (col < last[:, None]) & (col != middle_sep[:, None]) & ~masked_at
    special_token = (ids == sp.pad) | (ids == sp.cls) | (ids == sp.sep) | (ids == sp.mask)
    bad["special token inside the text ([MASK] off the masked positions, or [PAD]/[CLS]/[SEP])"] = (
        interior & special_token
    ).any(axis=1)
    if nsp:
        labels = arrays[formats.NEXT_SENTENCE_LABELS]
        bad["next_sentence_labels are not 0/1"] = (labels != 0) & (labels != 1)
    return bad


def count_samples(arrays: dict[str, np.ndarray], special: SpecialIds, nsp: bool) -> SampleCounts:
    ids, mask = arrays[formats.INPUT_IDS], arrays[formats.INPUT_MASK]
    pos, lab = arrays[formats.MASKED_LM_POSITIONS], arrays[formats.MASKED_LM_IDS]
    length = (mask == 1).sum(axis=1)
    used = pos > 0
    shown = np.take_along_axis(ids, np.clip(pos, 0, ids.shape[1] - 1), axis=1)
    as_mask = int((used & (shown == special.mask)).sum())
    kept = int((used & (shown == lab) & (shown != special.mask)).sum())
    masked = int(used.sum())
    return SampleCounts(
        samples=len(ids),
        real_tokens=int(length.sum()),
        short_samples=int((length < ids.shape[1]).sum()),
        masked=masked,
        masked_as_mask=as_mask,
        masked_kept=kept,
        masked_random=masked - as_mask - kept,
        random_next=int(arrays[formats.NEXT_SENTENCE_LABELS].sum()) if nsp else 0,
    )


# ---------------------------------------------------------------- one file
@dataclass
class FileCheck:
    name: str
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    counts: SampleCounts = field(default_factory=SampleCounts)


class _RowProblems:
    """Accumulates offending rows per rule across slabs."""

    def __init__(self, name: str):
        self.name = name
        self.rows: dict[str, list[int]] = {}
        self.counts: dict[str, int] = {}

    def add(self, bad: dict[str, np.ndarray], offset: int) -> None:
        for what, flags in bad.items():
            hits = np.flatnonzero(flags)
            if not len(hits):
                continue
            listed = self.rows.setdefault(what, [])
            listed.extend((hits[: ROWS_LISTED - len(listed)] + offset).tolist())
            self.counts[what] = self.counts.get(what, 0) + len(hits)

    def problems(self) -> list[Problem]:
        return [Problem(self.name, what, self.rows[what], self.counts[what]) for what in self.counts]


def check_sample_file(path: str | Path, rules: SampleRules, name: str | None = None) -> FileCheck:
    """Check one HDF5 sample file: layout, then every row (in slabs). Never raises for bad data."""
    import h5py

    path = Path(path)
    check = FileCheck(name or str(path))
    try:
        with h5py.File(path, "r") as f:
            layout = _check_layout(f, rules, check)
            if layout is None:
                return check
            nsp, n_rows = layout
            check.rows = n_rows
            names = list(formats.sample_datasets(nsp))
            row_problems = _RowProblems(check.name)
            for lo, arrays in _read_slabs(f, names, n_rows, check):
                row_problems.add(find_bad_rows(arrays, rules, nsp), lo)
                check.counts.add(count_samples(arrays, rules.special, nsp))
            check.problems.extend(row_problems.problems())
    except OSError as e:
        check.problems.append(Problem(check.name, f"not a readable HDF5 file ({_brief(e)})"))
    return check


def _read_slabs(f, names: list[str], n_rows: int, check: FileCheck):
    """Yield (first row, arrays) slab by slab; a slab that fails to read is retried chunk by chunk so
    that only the damaged chunks are reported (and skipped)."""
    for lo in range(0, n_rows, SLAB_ROWS):
        hi = min(lo + SLAB_ROWS, n_rows)
        try:
            yield lo, {k: f[k][lo:hi] for k in names}
            continue
        except (OSError, ValueError):
            pass
        for c_lo in range(lo, hi, formats.HDF5_CHUNK_ROWS):
            c_hi = min(c_lo + formats.HDF5_CHUNK_ROWS, hi)
            try:
                arrays = {k: f[k][c_lo:c_hi] for k in names}
            except (OSError, ValueError) as e:
                check.problems.append(Problem(check.name, f"unreadable data in rows {c_lo}-{c_hi - 1} ({_brief(e)})"))
                continue
            yield c_lo, arrays


def _brief(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def _check_layout(f, rules: SampleRules, check: FileCheck) -> tuple[bool, int] | None:
    """(nsp, rows) when the datasets, dtypes and shapes are right; else record problems, None."""
    problems = check.problems
    sizes = {"S": rules.max_seq_length, "M": rules.max_predictions_per_seq}
    n_rows = None
    nsp_name = formats.NEXT_SENTENCE_LABELS
    nsp = nsp_name in f if rules.nsp is None else rules.nsp
    if not nsp and nsp_name in f:
        problems.append(Problem(check.name, f"has {nsp_name} but the samples are declared without NSP"))
    for name, (dtype, width_key) in formats.sample_datasets(nsp).items():
        if name not in f or not hasattr(f[name], "dtype"):
            problems.append(Problem(check.name, f"dataset {name} is missing"))
            continue
        ds = f[name]
        if ds.dtype != np.dtype(dtype):
            problems.append(Problem(check.name, f"dataset {name} has dtype {ds.dtype}, expected {dtype}"))
        ndim = 1 if width_key is None else 2
        if len(ds.shape) != ndim:
            problems.append(Problem(check.name, f"dataset {name} has shape {ds.shape}, expected {ndim} dimensions"))
            continue
        if n_rows is None:
            n_rows = ds.shape[0]
        elif ds.shape[0] != n_rows:
            problems.append(Problem(check.name, f"dataset {name} has {ds.shape[0]} rows, input_ids has {n_rows}"))
        if width_key is not None:
            if sizes[width_key] is None:
                sizes[width_key] = ds.shape[1]
            elif ds.shape[1] != sizes[width_key]:
                problems.append(
                    Problem(check.name, f"dataset {name} has width {ds.shape[1]}, expected {sizes[width_key]}")
                )
    if problems:
        return None
    return nsp, int(n_rows or 0)


# ---------------------------------------------------------------- a folder (--validate-only)
@dataclass(frozen=True)
class ValidateConfig:
    """`sharebert mask --validate-only SAMPLES_DIR`: settings not given come from manifest.json."""

    samples_dir: Path
    vocab: Path | None = None
    max_seq_length: int | None = None
    max_predictions_per_seq: int | None = None
    masked_lm_prob: float | None = None
    whole_word_masking: bool | None = None
    workers: int | None = None  # None: every core (parallel.default_workers)

    def __post_init__(self):
        object.__setattr__(self, "samples_dir", Path(self.samples_dir))
        if self.workers is None:
            object.__setattr__(self, "workers", default_workers())
        if self.vocab is not None:
            object.__setattr__(self, "vocab", Path(self.vocab))
        for name in ("max_seq_length", "max_predictions_per_seq"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.masked_lm_prob is not None and not 0 < self.masked_lm_prob <= 1:
            raise ConfigError(f"masked_lm_prob must be in (0, 1], got {self.masked_lm_prob}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")


@dataclass
class ValidationReport:
    folder: Path
    files: list[FileCheck]
    problems: list[Problem]  # every problem, folder-level ones first
    counts: SampleCounts


def check_folder(config: ValidateConfig) -> ValidationReport:
    """Check every sample file of a folder (and, with a manifest, sizes, hashes, rows and the vocab)."""
    folder = config.samples_dir
    if not folder.is_dir():
        raise file_error(folder, "not a folder")
    if (folder / formats.MANIFEST_FILE).exists():
        plan = _plan_with_manifest(config)
    else:
        plan = _plan_without_manifest(config)
    tasks = [(folder / name, plan.rules, name) for name in plan.names]
    workers = min(config.workers, max(len(tasks), 1))
    checks = list(map_ordered(_check_task, tasks, workers, preload=("sharebert.pipeline.mask.validate", "h5py")))
    problems = plan.problems
    counts = SampleCounts()
    for check in checks:
        problems.extend(check.problems)
        counts.add(check.counts)
        expected = plan.expected_rows.get(check.name)
        if expected is not None and not check.problems and check.rows != expected:
            problems.append(Problem(check.name, f"{check.rows} rows but {formats.MANIFEST_FILE} says {expected}"))
    return ValidationReport(folder, checks, problems, counts)


def validate_samples(config: ValidateConfig) -> ValidationReport:
    """check_folder, logging every problem; raises DataError when there is any."""
    report = check_folder(config)
    for problem in report.problems:
        log.error("%s", problem)
    if report.problems:
        problems = _plural(len(report.problems), "problem")
        files = _plural(len({p.file for p in report.problems}), "file")
        raise DataError(f"{config.samples_dir}: {problems} in {files} (listed above)")
    log.info("%s: %d files valid: %s", config.samples_dir, len(report.files), describe_summary(report.counts.summary()))
    return report


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _check_task(task) -> FileCheck:
    path, rules, name = task
    return check_sample_file(path, rules, name=name)


def _sample_names(folder: Path) -> list[str]:
    def order(name: str):
        parsed = formats.parse_sample_file_name(name)
        return (0, formats.SPLITS.index(parsed[0]), parsed[1], name) if parsed else (1, "", 0, name)

    return sorted((p.name for p in folder.glob(f"*{formats.SAMPLE_SUFFIX}")), key=order)


@dataclass
class _Plan:
    rules: SampleRules
    names: list[str]  # files to check
    problems: list[Problem]  # found before reading any file
    expected_rows: dict[str, int] = field(default_factory=dict)


def _plan_with_manifest(config: ValidateConfig) -> _Plan:
    folder = config.samples_dir
    manifest = formats.read_manifest(folder, check="none")
    settings = manifest.settings
    for name in ("max_seq_length", "max_predictions_per_seq", "masked_lm_prob", "whole_word_masking"):
        given = getattr(config, name)
        if given is not None and given != settings.get(name):
            raise ConfigError(f"{name} {given} disagrees with {formats.MANIFEST_FILE} ({settings.get(name)})")
    problems: list[Problem] = []
    vocab_path = config.vocab or folder / formats.VOCAB_FILE
    replacement_allowed = None
    vocab_sha = sha256_file(vocab_path) if vocab_path.exists() else None
    if vocab_sha is None:
        problems.append(Problem(str(vocab_path), "vocab file missing"))
    elif vocab_sha != manifest.vocab.get("sha256"):
        problems.append(
            Problem(
                str(vocab_path),
                f"not the vocab the samples were made with (sha256 differs from {formats.MANIFEST_FILE})",
            )
        )
    else:
        replacement_allowed = _replacement_table(read_vocab(vocab_path))
    rules = SampleRules(
        vocab_size=manifest.vocab_size,
        special=SpecialIds.from_dict(manifest.vocab["special_ids"]),
        masked_lm_prob=float(settings["masked_lm_prob"]),
        max_seq_length=manifest.max_seq_length,
        max_predictions_per_seq=manifest.max_predictions_per_seq,
        nsp=manifest.nsp,
        whole_word_masking=bool(settings.get("whole_word_masking", False)),
        replacement_allowed=replacement_allowed,
    )
    listed = {f.name for f in manifest.files}
    names = []
    for f in manifest.files:
        problem = _file_against_manifest(folder, f)
        if problem:
            problems.append(problem)
        if formats.listed_path(folder, f.name, formats.MANIFEST_FILE).exists():
            names.append(f.name)
    for name in _sample_names(folder):
        if name not in listed:
            problems.append(Problem(name, f"not listed in {formats.MANIFEST_FILE}"))
    return _Plan(rules, names, problems, {f.name: f.rows for f in manifest.files})


def _file_against_manifest(folder: Path, f: formats.SampleFile) -> Problem | None:
    path = formats.listed_path(folder, f.name, formats.MANIFEST_FILE)
    if not path.exists():
        return Problem(f.name, f"listed in {formats.MANIFEST_FILE} but missing")
    size = path.stat().st_size
    if size != f.bytes:
        return Problem(
            f.name, f"{size} bytes but {formats.MANIFEST_FILE} says {f.bytes}: file changed after `sharebert mask`"
        )
    if sha256_file(path) != f.sha256:
        return Problem(f.name, f"sha256 differs from {formats.MANIFEST_FILE}: file changed after `sharebert mask`")
    return None


def _plan_without_manifest(config: ValidateConfig) -> _Plan:
    folder = config.samples_dir
    _refuse_interrupted_run(folder)
    if config.vocab is None:
        raise ConfigError(
            f"{folder} has no {formats.MANIFEST_FILE}: give the vocab the samples were made with (--vocab)"
        )
    names = _sample_names(folder)
    if not names:
        raise file_error(folder, f"no *{formats.SAMPLE_SUFFIX} sample files and no {formats.MANIFEST_FILE}")
    vocab = read_vocab(config.vocab)
    rules = SampleRules(
        vocab_size=len(vocab),
        special=special_ids(vocab),
        masked_lm_prob=config.masked_lm_prob or REFERENCE_MASKED_LM_PROB,
        max_seq_length=config.max_seq_length,
        max_predictions_per_seq=config.max_predictions_per_seq,
        nsp=None,
        whole_word_masking=bool(config.whole_word_masking),
        replacement_allowed=None,  # the reference draws replacements from the whole vocab
    )
    log.info("%s: no %s; checking %d files against %s", folder, formats.MANIFEST_FILE, len(names), config.vocab)
    return _Plan(rules, names, [])


def _refuse_interrupted_run(folder: Path) -> None:
    """A folder with the state of a `sharebert mask` run but no manifest.json: that run did not finish."""
    state = folder / formats.MASK_STATE_DIR
    if not (state / formats.MASK_RUN_FILE).exists():
        return  # samples of another pipeline (no manifest of their own): checked file by file
    finished = len(list((state / formats.MASK_RECORDS_DIR).glob("*.json")))
    raise file_error(
        folder,
        f"incomplete: an interrupted `sharebert mask` run ({finished} files finished, no {formats.MANIFEST_FILE}); "
        "rerun the same mask command to finish it",
    )


def _replacement_table(vocab: list[str]) -> np.ndarray:
    table = np.zeros(len(vocab), dtype=bool)
    table[replacement_token_ids(vocab)] = True
    return table
