"""Which shard every document goes to: a seeded train/test split, then token-balanced shards.

Uneven shards make data-parallel ranks run different numbers of steps (and hang at the end), so
every shard of a split must hold at most MAX_IMBALANCE more tokens than the split's mean. Documents
are placed largest first onto the least-loaded shard (LPT; ties broken by a seeded order and the
shard index). Greedy placement guarantees max <= mean + largest item, so when a few documents are
too large (a handful of books into many shards) they are cut at sentence boundaries into parts
(written as "<id>#p1", "<id>#p2", ...), with ever smaller parts until the bound holds. If even
single sentences are too large, BalanceError says how many shards the corpus supports.

Everything here is a pure function of numpy arrays and a seed; nothing reads text.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ...errors import DataError

MAX_IMBALANCE = 0.05
# Sizes a document is cut down to when greedy placement is not balanced enough, as fractions of the
# mean shard size; the last one makes the bound hold whenever single sentences are small enough.
_PART_CAPS = (1.0, 0.5, 0.25, 0.125, 0.0625, MAX_IMBALANCE)

SentenceLengths = Callable[[np.ndarray], dict[int, np.ndarray]]


class BalanceError(DataError):
    """The corpus cannot fill the requested shards evenly."""


@dataclass(frozen=True)
class Placement:
    """Where each document (and each part of a cut document) goes.

    `doc_shard[d]` is the global shard index of document d (train shards first, then test shards),
    or -1 when the document is cut into parts; part i is sentences [part_start[i], part_end[i]) of
    document part_doc[i], numbered part_number[i] (1-based) and placed in shard part_shard[i].
    Parts are sorted by (document, number).
    """

    doc_shard: np.ndarray
    part_doc: np.ndarray
    part_number: np.ndarray
    part_start: np.ndarray
    part_end: np.ndarray
    part_shard: np.ndarray
    shard_tokens: np.ndarray

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays) -> Placement:
        return cls(**{name: np.asarray(arrays[name]) for name in cls.__dataclass_fields__})


def held_out_documents(num_documents: int, frac_test: float, seed: int) -> np.ndarray:
    """Boolean mask of the documents held out for test: round(n * frac_test) of them, at least 1 when
    frac_test > 0, chosen by a permutation seeded with `seed`."""
    is_test = np.zeros(num_documents, dtype=bool)
    if frac_test <= 0 or num_documents == 0:
        return is_test
    count = max(1, round(num_documents * frac_test))
    rng = np.random.default_rng([seed, 1])
    is_test[rng.permutation(num_documents)[:count]] = True
    return is_test


def place_documents(
    doc_tokens: np.ndarray,
    num_train_shards: int,
    num_test_shards: int,
    frac_test: float,
    seed: int,
    sentence_lengths: SentenceLengths,
    tolerance: float = MAX_IMBALANCE,
) -> Placement:
    """Split documents into train/test and balance each split over its shards.

    `sentence_lengths(doc_indices)` returns the token count of every sentence of those documents;
    it is called only for documents that have to be cut.
    """
    doc_tokens = np.asarray(doc_tokens, dtype=np.int64)
    n = len(doc_tokens)
    is_test = held_out_documents(n, frac_test if num_test_shards else 0.0, seed)
    if num_test_shards and is_test.all():
        raise BalanceError(f"the corpus has only {n} document(s): too few for a train and a test split")
    doc_shard = np.full(n, -1, dtype=np.int32)
    parts: list[tuple[int, int, int, int, int]] = []
    shard_tokens = []
    for split, docs, shards, offset in (
        ("train", np.flatnonzero(~is_test), num_train_shards, 0),
        ("test", np.flatnonzero(is_test), num_test_shards, num_train_shards),
    ):
        if shards == 0:
            continue
        split_placement = _balance_split(split, docs, doc_tokens, shards, seed, sentence_lengths, tolerance)
        whole_docs, whole_shards, split_parts, loads = split_placement
        doc_shard[whole_docs] = whole_shards + offset
        parts.extend((d, k, s, e, shard + offset) for d, k, s, e, shard in split_parts)
        shard_tokens.append(loads)
    parts.sort()
    columns = np.array(parts, dtype=np.int64).reshape(-1, 5).T
    return Placement(
        doc_shard=doc_shard,
        part_doc=columns[0].astype(np.int64),
        part_number=columns[1].astype(np.int32),
        part_start=columns[2].astype(np.int32),
        part_end=columns[3].astype(np.int32),
        part_shard=columns[4].astype(np.int32),
        shard_tokens=np.concatenate(shard_tokens).astype(np.int64),
    )


def _balance_split(split, docs, doc_tokens, shards, seed, sentence_lengths, tolerance):
    """(whole documents, their shards, parts [(doc, number, start, end, shard)], shard loads)."""
    sizes = doc_tokens[docs]
    total = int(sizes.sum())
    if len(docs) == 0 or total == 0:
        raise BalanceError(f"the {split} split has no tokens to fill {shards} shard(s)")
    mean = total / shards
    limit = (1 + tolerance) * mean
    rng_seed = [seed, 2 if split == "train" else 3]
    shard_of, loads = greedy_placement(sizes, shards, rng_seed)
    if loads.max() <= limit:
        return docs, shard_of, [], loads
    lengths: dict[int, np.ndarray] = {}
    items = None
    for fraction in _PART_CAPS:
        cap = max(1.0, fraction * mean) if fraction > tolerance else tolerance * mean
        items = _cut_items(docs, sizes, cap, lengths, sentence_lengths)
        shard_of, loads = greedy_placement(items.tokens, shards, rng_seed)
        if loads.max() <= limit:
            return _split_result(items, shard_of, loads)
    supported = _supported_shards(items.tokens, shards, rng_seed, tolerance)
    raise BalanceError(
        f"cannot fill {shards} {split} shards within {tolerance:.0%} of their mean ({mean:,.0f} tokens) even after "
        f"cutting documents at sentence boundaries: the {split} split has {total:,} tokens in {len(docs):,} "
        f"document(s) and its largest piece that cannot be cut (one sentence) has {int(items.tokens.max()):,} "
        f"tokens; it supports at most "
        f"{supported} {split} shard(s): ask for fewer, or add text"
    )


@dataclass
class _Items:
    """Whole documents and document parts to place (parallel arrays)."""

    doc: np.ndarray
    number: np.ndarray  # 0 = whole document
    start: np.ndarray
    end: np.ndarray
    tokens: np.ndarray


def _cut_items(docs, sizes, cap, lengths, sentence_lengths) -> _Items:
    """Documents larger than `cap` tokens cut into parts of about `cap` tokens; the others whole."""
    big = sizes > cap
    missing = np.array([d for d in docs[big].tolist() if d not in lengths], dtype=np.int64)
    if len(missing):
        lengths.update(sentence_lengths(missing))
    zeros = np.zeros(int((~big).sum()), dtype=np.int64)
    columns = [[docs[~big]], [zeros], [zeros], [zeros], [sizes[~big]]]
    for d, size in zip(docs[big].tolist(), sizes[big].tolist()):
        cuts = cut_points(lengths[d], math.ceil(size / cap))
        if len(cuts) == 2:  # a single sentence cannot be cut
            pieces = [(d, 0, 0, 0, size)]
        else:
            cum = np.concatenate([[0], np.cumsum(lengths[d])])
            pieces = [(d, k, s, e, int(cum[e] - cum[s])) for k, (s, e) in enumerate(pairwise(cuts), 1)]
        for column, values in zip(columns, zip(*pieces)):
            column.append(np.asarray(values, dtype=np.int64))
    return _Items(*(np.concatenate(c).astype(np.int64) for c in columns))


def cut_points(sentence_tokens: np.ndarray, parts: int) -> list[int]:
    """Sentence boundaries [0, ..., n] cutting a document into about `parts` parts of equal tokens.

    Each boundary is the sentence end closest to an equal share; duplicates (a sentence larger than
    a share) are dropped, so fewer, never empty, parts may result.
    """
    n = len(sentence_tokens)
    parts = min(parts, n)
    if parts <= 1:
        return [0, n]
    cum = np.cumsum(np.asarray(sentence_tokens, dtype=np.int64))
    targets = cum[-1] * np.arange(1, parts) / parts
    after = np.searchsorted(cum, targets)  # first sentence end at or past each target
    before = np.maximum(after - 1, 0)
    nearer = np.where(np.abs(cum[before] - targets) < np.abs(cum[np.minimum(after, n - 1)] - targets), before, after)
    bounds = sorted({0, n, *(int(b) + 1 for b in nearer if 0 <= b < n - 1)})
    return bounds


def _split_result(items: _Items, shard_of: np.ndarray, loads: np.ndarray):
    whole = items.number == 0
    parts = [
        (int(d), int(k), int(s), int(e), int(sh))
        for d, k, s, e, sh in zip(
            items.doc[~whole], items.number[~whole], items.start[~whole], items.end[~whole], shard_of[~whole]
        )
    ]
    return items.doc[whole], shard_of[whole], parts, loads


def greedy_placement(sizes: np.ndarray, shards: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """LPT: items largest first (ties in a seeded random order) onto the least-loaded shard (ties: lowest index).

    Returns (shard of each item, tokens per shard).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    shuffled = np.random.default_rng(seed).permutation(len(sizes))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    heap = [(0, k) for k in range(shards)]
    shard_of = np.empty(len(sizes), dtype=np.int32)
    for item, size in zip(order.tolist(), sizes[order].tolist()):
        load, k = heap[0]
        shard_of[item] = k
        heapq.heapreplace(heap, (load + size, k))
    loads = np.zeros(shards, dtype=np.int64)
    np.add.at(loads, shard_of, sizes)
    return shard_of, loads


def _supported_shards(sizes: np.ndarray, requested: int, seed, tolerance: float) -> int:
    """The largest shard count below `requested` that these items fill within the tolerance (binary search)."""
    low, high = 0, requested - 1  # low: known to work (0 = nothing does), high: largest candidate
    while low < high:
        mid = (low + high + 1) // 2
        _, loads = greedy_placement(sizes, mid, seed)
        if loads.max() <= (1 + tolerance) * sizes.sum() / mid:
            low = mid
        else:
            high = mid - 1
    return max(low, 1)
