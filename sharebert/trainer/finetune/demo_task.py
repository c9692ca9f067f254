"""A small, honest GLUE-format task made from a prepared corpus, for the end-to-end demo.

Acceptability in CoLA's exact layout: label 1 is a real sentence of the corpus, label 0 is a
corpus sentence corrupted in one of two ways:
  * replace (default): 30% of its words replaced by random words of the vocabulary. Lexical and local,
    so a tiny model pretrained for a few minutes learns it within a minute of fine-tuning;
  * shuffle: its words in a random new order. Needs syntax; a tiny, briefly pretrained model stays
    near chance.
Documents (not sentences) are assigned to train, dev and test by a hash of (seed, document id), so no
document contributes to two splits; each split keeps a uniform sample of at most N sentences
(reservoir sampling, memory bounded by N), and each kept sentence is corrupted with probability 1/2.
Everything follows from the seed.

    python -m sharebert.trainer.finetune.demo_task PREPARED_DIR OUT_DIR --seed 1
    sharebert finetune --model_name_or_path MODEL --task_name cola --data_dir OUT_DIR --output_dir RUN

writes OUT_DIR/CoLA/{train,dev,test}.tsv and OUT_DIR/demo_task.json (what it is and how it was made).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError, ShareBertError, file_error
from ...fileio import atomic_path, write_json_atomic
from ...pipeline import formats
from ...tokenization import read_vocab
from .glue import GLUE_TASKS, TSV_FILE_OF_SPLIT

log = logging.getLogger(__name__)

TASK_FOLDER = GLUE_TASKS["cola"].folder
INFO_FILE = "demo_task.json"
PARTS = ("train", "dev", "test")
SPLIT_OF_PART = {"train": "train", "dev": "validation", "test": "test"}  # the GLUE split each part is
SOURCE_CODE = "demo"  # CoLA's first column names the source publication; ours is the demo corpus
MAX_TRIES = 10  # draws for a shuffle that changes the order / a replacement that changes the word
CORRUPTIONS = ("replace", "shuffle")
DESCRIPTIONS = {
    "replace": "acceptability (CoLA layout): 1 = a real corpus sentence, 0 = the sentence with a share of its "
    "words replaced by random vocabulary words",
    "shuffle": "acceptability (CoLA layout): 1 = a real corpus sentence, 0 = the sentence with its words shuffled",
}


@dataclass(frozen=True)
class DemoTaskConfig:
    prepared_dir: Path
    output_dir: Path
    seed: int = 1
    sizes: dict = field(default_factory=lambda: {"train": 2000, "dev": 500, "test": 500})
    dev_fraction: float = 0.1  # of the documents
    test_fraction: float = 0.1
    min_words: int = 6  # words with a letter in them
    max_words: int = 40  # all tokens, punctuation included
    corruption: str = "replace"
    replace_fraction: float = 0.3  # of the words, at least one

    def __post_init__(self):
        object.__setattr__(self, "prepared_dir", Path(self.prepared_dir))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if set(self.sizes) != set(PARTS) or any(int(v) < 1 for v in self.sizes.values()):
            raise ConfigError(f"sizes={self.sizes} must give train, dev and test sizes >= 1")
        for name in ("dev_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ConfigError(f"{name}={getattr(self, name)} must be in (0, 0.5)")
        if not 2 <= self.min_words <= self.max_words:
            raise ConfigError(f"min_words={self.min_words}, max_words={self.max_words}: need 2 <= min <= max")
        if self.corruption not in CORRUPTIONS:
            raise ConfigError(f"corruption={self.corruption!r} must be one of {', '.join(CORRUPTIONS)}")
        if not 0.0 < self.replace_fraction <= 1.0:
            raise ConfigError(f"replace_fraction={self.replace_fraction} must be in (0, 1]")


@dataclass
class _Reservoir:
    """A uniform sample of at most `capacity` items from a stream (Algorithm R), from its own rng."""

    capacity: int
    rng: np.random.Generator
    items: list = field(default_factory=list)
    seen: int = 0

    def offer(self, item) -> None:
        if len(self.items) < self.capacity:
            self.items.append(item)
        else:
            j = int(self.rng.integers(0, self.seen + 1))
            if j < self.capacity:
                self.items[j] = item
        self.seen += 1


def document_part(doc_id: str, seed: int, dev_fraction: float, test_fraction: float) -> str:
    """train, dev or test for a document: a pure function of (seed, id), independent of shard layout."""
    digest = hashlib.blake2b(f"{seed}\0{doc_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    if u < dev_fraction:
        return "dev"
    if u < dev_fraction + test_fraction:
        return "test"
    return "train"


def decode_word_pieces(ids, vocab: list[str]) -> str:
    """Token ids back to text: '##' pieces join the previous piece (lowercased for an uncased vocab)."""
    words: list[str] = []
    for i in ids:
        piece = vocab[int(i)]
        if piece.startswith("##") and words:
            words[-1] += piece[2:]
        else:
            words.append(piece)
    return " ".join(words)


def iter_corpus_sentences(prepared_dir: Path, info: dict, vocab: list[str]):
    """(document id, sentence text) for every sentence of every shard, in shard order; one batch in memory."""
    import pyarrow.parquet as pq

    shards = sorted(info.get("shards", []), key=lambda s: (s["split"], s["index"]))
    if not shards:
        raise file_error(prepared_dir / formats.PREPARE_INFO_FILE, "lists no shards")
    for shard in shards:
        path = formats.listed_path(prepared_dir, shard["file"], formats.PREPARE_INFO_FILE)
        parquet = pq.ParquetFile(path)
        has_text = formats.TEXT_COLUMN in parquet.schema_arrow.names
        columns = [formats.ID_COLUMN, formats.TEXT_COLUMN if has_text else formats.SENTENCES_COLUMN]
        for batch in parquet.iter_batches(columns=columns, batch_size=256):
            rows = batch.to_pydict()
            for doc_id, sentences in zip(rows[formats.ID_COLUMN], rows[columns[1]]):
                for sentence in sentences:
                    yield doc_id, sentence if has_text else decode_word_pieces(sentence, vocab)


def shuffled_words(words: list[str], rng: np.random.Generator) -> list[str] | None:
    """The words in a new random order, or None when no order differs from the original (e.g. 'a a a')."""
    for _ in range(MAX_TRIES):
        candidate = [words[i] for i in rng.permutation(len(words))]
        if candidate != words:
            return candidate
    return None


def replaced_words(words: list[str], rng: np.random.Generator, fraction: float, pool: list[str]) -> list[str]:
    """The words with max(1, round(fraction * n)) of them, at random positions, replaced by other pool words."""
    out = list(words)
    for i in rng.choice(len(words), max(1, round(fraction * len(words))), replace=False):
        for _ in range(MAX_TRIES):
            out[i] = pool[int(rng.integers(len(pool)))]
            if out[i] != words[i]:
                break
    return out


def replacement_pool(vocab: list[str]) -> list[str]:
    """Whole words of the vocabulary: no special tokens, no '##' continuations, at least one letter."""
    return [
        t
        for t in vocab
        if not (t.startswith("[") and t.endswith("]")) and not t.startswith("##") and any(ch.isalpha() for ch in t)
    ]


def build_demo_task(config: DemoTaskConfig) -> dict:
    """Write OUT_DIR/CoLA/{train,dev,test}.tsv from the prepared corpus; return what was written."""
    info = formats.read_prepare_info(config.prepared_dir)
    vocab = read_vocab(config.prepared_dir / formats.VOCAB_FILE)
    seeds = np.random.SeedSequence(config.seed).spawn(2 * len(PARTS))
    reservoirs = {p: _Reservoir(int(config.sizes[p]), np.random.default_rng(s)) for p, s in zip(PARTS, seeds)}
    label_rngs = {p: np.random.default_rng(s) for p, s in zip(PARTS, seeds[len(PARTS) :])}
    corrupt = _corruption(config, vocab)

    for doc_id, text in iter_corpus_sentences(config.prepared_dir, info, vocab):
        words = _clean(text).split(" ")
        if len(words) <= config.max_words and _word_count(words) >= config.min_words:
            reservoirs[document_part(doc_id, config.seed, config.dev_fraction, config.test_fraction)].offer(words)

    examples = {}
    for part in PARTS:
        if not reservoirs[part].items:
            raise DataError(
                f"{config.prepared_dir}: corpus too small: no sentence of {config.min_words}-{config.max_words} "
                f"words fell into the {part} split (try another --seed or a bigger corpus)"
            )
        examples[part] = _label(reservoirs[part].items, label_rngs[part], corrupt)

    folder = config.output_dir / TASK_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    tsv = {part: folder / TSV_FILE_OF_SPLIT[split] for part, split in SPLIT_OF_PART.items()}
    _write_lines(tsv["train"], [_cola_row(w, y) for w, y in examples["train"]])
    _write_lines(tsv["dev"], [_cola_row(w, y) for w, y in examples["dev"]])
    _write_lines(
        tsv["test"], ["index\tsentence"] + [f"{i}\t{' '.join(w)}" for i, (w, _) in enumerate(examples["test"])]
    )
    summary = {
        "task": DESCRIPTIONS[config.corruption],
        "source": str(config.prepared_dir),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "examples": {p: len(examples[p]) for p in PARTS},
        "positives": {p: sum(y for _, y in examples[p]) for p in PARTS},
        "candidates": {p: reservoirs[p].seen for p in PARTS},
        "folder": str(folder),
    }
    write_json_atomic(config.output_dir / INFO_FILE, summary)
    log.debug("demo task: %s examples in %s", summary["examples"], folder)
    return summary


def _word_count(words: list[str]) -> int:
    """Tokens with a letter in them: punctuation and markup runs ('* * *') do not make a sentence."""
    return sum(any(ch.isalpha() for ch in w) for w in words)


def _clean(text: str) -> str:
    """One line of single-spaced words: a TSV cell cannot hold tabs or newlines."""
    return " ".join(text.split())


def _corruption(config: DemoTaskConfig, vocab: list[str]):
    """(words, rng) -> corrupted words, or None when the sentence cannot be corrupted."""
    if config.corruption == "shuffle":
        return shuffled_words
    pool = replacement_pool(vocab)
    if len(pool) < 2:
        raise file_error(config.prepared_dir / formats.VOCAB_FILE, "fewer than 2 whole words to replace words with")
    return lambda words, rng: replaced_words(words, rng, config.replace_fraction, pool)


def _label(sentences: list[list[str]], rng: np.random.Generator, corrupt) -> list[tuple[list[str], int]]:
    labelled = []
    for words in sentences:
        if rng.random() < 0.5:
            corrupted = corrupt(words, rng)
            if corrupted is not None:
                labelled.append((corrupted, 0))
                continue
        labelled.append((words, 1))
    return labelled


def _cola_row(words: list[str], label: int) -> str:
    # CoLA train/dev: source, label, the original author's mark ("*" = unacceptable), sentence; no header.
    return f"{SOURCE_CODE}\t{label}\t{'' if label else '*'}\t{' '.join(words)}"


def _write_lines(path: Path, lines: list[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sharebert.trainer.finetune.demo_task",
        description="Build a CoLA-format acceptability task (real vs corrupted sentences) from a prepared corpus.",
    )
    parser.add_argument("prepared_dir", type=Path, help="output folder of `sharebert prepare`")
    parser.add_argument("output_dir", type=Path, help="GLUE data folder to write (CoLA/ inside it)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train_size", type=int, default=2000)
    parser.add_argument("--dev_size", type=int, default=500)
    parser.add_argument("--test_size", type=int, default=500)
    parser.add_argument(
        "--corruption",
        choices=CORRUPTIONS,
        default="replace",
        help="label 0: words replaced by random vocabulary words (default) or shuffled",
    )
    parser.add_argument("--replace_fraction", type=float, default=0.3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        sizes = {"train": args.train_size, "dev": args.dev_size, "test": args.test_size}
        config = DemoTaskConfig(
            args.prepared_dir,
            args.output_dir,
            seed=args.seed,
            sizes=sizes,
            corruption=args.corruption,
            replace_fraction=args.replace_fraction,
        )
        summary = build_demo_task(config)
    except ShareBertError as e:
        print(f"demo_task: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {summary['folder']}: {summary['examples']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
