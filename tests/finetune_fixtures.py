"""Small GLUE folders in each task's real file layout, written by the tests (independent of glue.py).

Headers and row shapes are those of the GLUE download (CoLA's train/dev without a header, MRPC's
"Quality #1 ID ..." columns, MNLI's parse columns and five annotator labels in dev, ...).
"""

from __future__ import annotations

from pathlib import Path

FOLDERS = {
    "cola": "CoLA",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "qqp": "QQP",
    "stsb": "STS-B",
    "mnli": "MNLI",
    "qnli": "QNLI",
    "rte": "RTE",
    "wnli": "WNLI",
}
_STSB_COLS = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
_MNLI_COLS = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
    "sentence1_parse\tsentence2_parse\tsentence1\tsentence2"
)
HEADERS = {  # task -> (labelled header or None, test header)
    "cola": (None, "index\tsentence"),
    "sst2": ("sentence\tlabel", "index\tsentence"),
    "mrpc": ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "index\t#1 ID\t#2 ID\t#1 String\t#2 String"),
    "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "id\tquestion1\tquestion2"),
    "stsb": (_STSB_COLS + "\tscore", _STSB_COLS),
    "mnli": (_MNLI_COLS + "\tlabel1\tgold_label", _MNLI_COLS),
    "qnli": ("index\tquestion\tsentence\tlabel", "index\tquestion\tsentence"),
    "rte": ("index\tsentence1\tsentence2\tlabel", "index\tsentence1\tsentence2"),
    "wnli": ("index\tsentence1\tsentence2\tlabel", "index\tsentence1\tsentence2"),
}
SUBMISSION_FILES = {  # a GLUE submission: one file per test split, the diagnostic (AX) included
    "CoLA.tsv",
    "SST-2.tsv",
    "MRPC.tsv",
    "QQP.tsv",
    "STS-B.tsv",
    "MNLI-m.tsv",
    "MNLI-mm.tsv",
    "QNLI.tsv",
    "RTE.tsv",
    "WNLI.tsv",
    "AX.tsv",
}
MNLI_DEV_HEADER = _MNLI_COLS + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
AX_HEADER = "index\tsentence1\tsentence2"


def _pair_columns(task: str, i: int, a: str, b: str | None) -> str:
    """The columns that labelled and test rows share: what the task's files hold before the two sentences, then them."""
    before = {
        "mrpc": [1000 + i, 2000 + i],  # the sentences' ids
        "stsb": ["main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none"],
        "mnli": [31193 + i, f"{31193 + i}n", "fiction", f"( {a} )", f"( {b} )", f"(ROOT {a})", f"(ROOT {b})"],
    }.get(task, [])
    return "\t".join(str(column) for column in [*before, a, b])


def labelled_row(task: str, i: int, a: str, b: str | None, label, dev: bool = False) -> str:
    if task == "cola":
        return f"gj04\t{label}\t{'' if str(label) == '1' else '*'}\t{a}"
    if task == "sst2":
        return f"{a}\t{label}"
    if task == "mrpc":
        return f"{label}\t{_pair_columns(task, i, a, b)}"
    if task == "qqp":
        return f"{i}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\t{label}"
    if task == "stsb":
        label = f"{float(label):.3f}"
    if task == "mnli":  # the annotators' labels (five in dev, one in train), then the gold label
        label = "\t".join([str(label)] * ((5 if dev else 1) + 1))
    return f"{unlabelled_row(task, i, a, b)}\t{label}"


def unlabelled_row(task: str, i: int, a: str, b: str | None) -> str:
    if task in ("cola", "sst2"):
        return f"{i}\t{a}"
    return f"{i}\t{_pair_columns(task, i, a, b)}"


def _write(path: Path, header: str | None, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([header] if header is not None else []) + rows
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_task(root: Path, task: str, train, dev, test, dev_mismatched=None) -> Path:
    """Write ROOT/<Folder>/{train,dev,test}.tsv; rows are (a, b, label) / (a, b) tuples."""
    folder = root / FOLDERS[task]
    labelled_header, test_header = HEADERS[task]
    _write(folder / "train.tsv", labelled_header, [labelled_row(task, i, *r) for i, r in enumerate(train)])
    if task == "mnli":
        _write(
            folder / "dev_matched.tsv",
            MNLI_DEV_HEADER,
            [labelled_row(task, i, *r, dev=True) for i, r in enumerate(dev)],
        )
        mm = dev if dev_mismatched is None else dev_mismatched
        _write(
            folder / "dev_mismatched.tsv",
            MNLI_DEV_HEADER,
            [labelled_row(task, i, *r, dev=True) for i, r in enumerate(mm)],
        )
        _write(folder / "test_matched.tsv", test_header, [unlabelled_row(task, i, *r) for i, r in enumerate(test)])
        _write(folder / "test_mismatched.tsv", test_header, [unlabelled_row(task, i, *r) for i, r in enumerate(test)])
    else:
        _write(folder / "dev.tsv", labelled_header, [labelled_row(task, i, *r) for i, r in enumerate(dev)])
        _write(folder / "test.tsv", test_header, [unlabelled_row(task, i, *r) for i, r in enumerate(test)])
    return folder


def write_ax(root: Path, pairs) -> Path:
    path = root / "diagnostic" / "diagnostic.tsv"
    _write(path, AX_HEADER, [f"{i}\t{a}\t{b}" for i, (a, b) in enumerate(pairs)])
    return path


# ---------------------------------------------------------------- a small vocab and learnable tasks
SPECIALS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GOOD = ["good", "great", "fine", "nice", "happy", "bright", "warm", "kind"]
BAD = ["bad", "awful", "poor", "sad", "dark", "cold", "cruel", "ugly"]
NEUTRAL = ["the", "a", "film", "day", "house", "road", "tree", "book", "was", "is", "very", "quite", "and", "it"]
WORDS = GOOD + BAD + NEUTRAL
MARKERS = [f"doc{k}" for k in range(200)]  # lets a test tell which document a sentence came from


VOCAB_SIZE = 1024  # the tiny preset's carving needs 5*ceil(H*H/V) + 2*ceil(H*I/V) <= H columns


def write_vocab(path: Path) -> Path:
    tokens = SPECIALS + WORDS + [".", ","] + MARKERS
    tokens += [f"[unused{k}]" for k in range(1, VOCAB_SIZE - len(tokens) + 1)]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def sentiment_examples(rng, n: int) -> list[tuple[str, None, int]]:
    """SST-2-like: label 1 when the sentence holds more GOOD than BAD words (never a tie)."""
    examples = []
    while len(examples) < n:
        n_good, n_bad = rng.integers(0, 4), rng.integers(0, 4)
        if n_good == n_bad:
            continue
        words = (
            list(rng.choice(GOOD, n_good))
            + list(rng.choice(BAD, n_bad))
            + list(rng.choice(NEUTRAL, rng.integers(2, 7)))
        )
        rng.shuffle(words)
        examples.append((" ".join(words) + " .", None, int(n_good > n_bad)))
    return examples


def similarity_examples(rng, n: int) -> list[tuple[str, str, float]]:
    """STS-B-like: the score is 5 * (share of GOOD words among the content words of the pair)."""
    examples = []
    for _ in range(n):
        k = int(rng.integers(0, 6))
        content = list(rng.choice(GOOD, k)) + list(rng.choice(BAD, 5 - k))
        rng.shuffle(content)
        a = " ".join(content[:3] + list(rng.choice(NEUTRAL, 2)))
        b = " ".join(content[3:] + list(rng.choice(NEUTRAL, 2)))
        examples.append((a, b, 5.0 * k / 5))
    return examples
