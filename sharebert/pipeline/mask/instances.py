"""Training instances: which token spans of a shard become one pretraining sample (pure numpy).

A shard is held as three flat arrays (`ShardTokens`): every token of every sentence, the token
offset where each sentence starts, and the sentence offset where each document starts. An instance
is then just one or two token spans (`InstanceSpans`); building instances never copies tokens, and
`assemble_tokens` turns a block of spans into the padded [CLS] a [SEP] (b [SEP]) rows.

The rules follow BERT's create_pretraining_data.py (docs/specification.md section 9), vectorized:
- per document a target length is drawn once: max_tokens, or with probability short_seq_prob a
  uniform integer in [2, max_tokens];
- consecutive sentences are accumulated until the chunk reaches the target or the document ends;
- a chunk longer than max_tokens loses tokens one at a time from the front or the back with equal
  probability, so the number removed from the front is Binomial(excess, 1/2).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, fields

import numpy as np

from ...tokenization import SpecialIds

MIN_TARGET_LENGTH = 2


@dataclass(frozen=True, slots=True)
class ShardTokens:
    """The documents of one shard as flat arrays.

    tokens[sentence_starts[i]:sentence_starts[i + 1]] is sentence i (no [CLS]/[SEP]);
    sentences document_starts[d]..document_starts[d + 1] - 1 belong to document d.
    """

    tokens: np.ndarray  # int32 [T]
    sentence_starts: np.ndarray  # int64 [n_sentences + 1], token offsets
    document_starts: np.ndarray  # int64 [n_documents + 1], sentence offsets

    @property
    def n_documents(self) -> int:
        return len(self.document_starts) - 1

    @classmethod
    def from_documents(cls, documents: list[list[list[int]]]) -> ShardTokens:
        """Build from nested Python lists (tests and small tools; shards come from Parquet)."""
        sentences = [s for doc in documents for s in doc]
        sentence_lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        document_lengths = np.array([len(doc) for doc in documents], dtype=np.int64)
        tokens = np.fromiter((t for s in sentences for t in s), dtype=np.int32, count=int(sentence_lengths.sum()))
        return cls(tokens, _offsets(sentence_lengths), _offsets(document_lengths))

    def document_tokens(self, d: int) -> np.ndarray:
        first, end = self.document_starts[d], self.document_starts[d + 1]
        return self.tokens[self.sentence_starts[first] : self.sentence_starts[end]]


@dataclass(frozen=True, slots=True)
class InstanceSpans:
    """N instances as token spans into ShardTokens.tokens.

    Segment a is tokens[a_start : a_start + a_len]; segment b (NSP only, else b_len == 0) likewise.
    random_next is the NSP label (True: b comes from another document).
    """

    a_start: np.ndarray  # int64 [N]
    a_len: np.ndarray  # int64 [N]
    b_start: np.ndarray  # int64 [N]
    b_len: np.ndarray  # int64 [N]
    random_next: np.ndarray  # bool [N]
    document: np.ndarray  # int64 [N], the document segment a comes from

    def __len__(self) -> int:
        return len(self.a_start)

    def take(self, index: np.ndarray) -> InstanceSpans:
        return InstanceSpans(*(getattr(self, f.name)[index] for f in fields(self)))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def draw_target_lengths(
    rng: np.random.Generator, n_documents: int, max_tokens: int, short_seq_prob: float
) -> np.ndarray:
    """One target length per document: max_tokens, or w.p. short_seq_prob uniform in [2, max_tokens]."""
    short = rng.random(n_documents) < short_seq_prob
    short_lengths = rng.integers(MIN_TARGET_LENGTH, max_tokens, size=n_documents, endpoint=True)
    return np.where(short, short_lengths, max_tokens).astype(np.int64)


def chunk_documents(shard: ShardTokens, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy chunks of whole sentences: (first sentence, end sentence (exclusive), document) per chunk.

    A chunk grows sentence by sentence until its token count reaches the document's target or the
    document ends. All documents advance one chunk per round (a searchsorted over the token
    offsets), so the Python loop runs once per chunk of the longest document, not once per chunk.
    """
    starts = shard.sentence_starts
    doc_first = shard.document_starts[:-1]
    doc_end = shard.document_starts[1:]
    active = np.flatnonzero(doc_first < doc_end)
    cursor = doc_first.copy()
    firsts, ends, docs = [], [], []
    while len(active):
        first = cursor[active]
        end = np.searchsorted(starts, starts[first] + targets[active], side="left")
        end = np.clip(end, first + 1, doc_end[active])
        firsts.append(first)
        ends.append(end)
        docs.append(active)
        cursor[active] = end
        active = active[end < doc_end[active]]
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    first, end, doc = (np.concatenate(x) for x in (firsts, ends, docs))
    order = np.argsort(first, kind="stable")  # document order, then position in the document
    return first[order], end[order], doc[order]


def build_single_segment_spans(
    shard: ShardTokens, rng: np.random.Generator, max_seq_length: int, short_seq_prob: float
) -> InstanceSpans:
    """MLM-only instances ([CLS] a [SEP]), the published setting."""
    max_tokens = max_seq_length - 2
    targets = draw_target_lengths(rng, shard.n_documents, max_tokens, short_seq_prob)
    first, end, doc = chunk_documents(shard, targets)
    token_start = shard.sentence_starts[first]
    total = shard.sentence_starts[end] - token_start
    length = np.minimum(total, max_tokens)
    front = rng.binomial(total - length, 0.5)
    zeros = np.zeros_like(length)
    return InstanceSpans(token_start + front, length, zeros, zeros, np.zeros(len(length), dtype=bool), doc)


def truncated_pair_lengths(a_len: np.ndarray, b_len: np.ndarray, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Lengths after BERT's pair truncation: drop one token at a time from the longer segment (b on ties)."""
    excess = np.maximum(a_len + b_len - max_tokens, 0)
    diff = a_len - b_len
    from_a = np.minimum(excess, np.maximum(diff, 0))
    from_b = np.minimum(excess, np.maximum(-diff, 0))
    rest = excess - from_a - from_b  # now equal lengths: b, a, b, a, ...
    return a_len - from_a - rest // 2, b_len - from_b - (rest + 1) // 2


def build_pair_spans(
    shard: ShardTokens, rng: np.random.Generator, max_seq_length: int, short_seq_prob: float
) -> InstanceSpans:
    """NSP instances ([CLS] a [SEP] b [SEP]) as in original BERT.

    Each chunk is split at a random sentence boundary into a and b; with probability 1/2 (always for
    a one-sentence chunk) b is replaced by sentences from a random other document of the shard,
    labelled random_next, and the unused sentences of the chunk are put back. The choices depend on
    each other, so this walks the chunks of each document in a Python loop (token work stays in
    numpy). A shard with a single document has no other document to draw from: its one-sentence
    chunks take the following sentence as b (labelled not random), or are dropped at the end.
    """
    max_tokens = max_seq_length - 3
    n_docs = shard.n_documents
    targets = draw_target_lengths(rng, n_docs, max_tokens, short_seq_prob).tolist()
    starts = shard.sentence_starts.tolist()
    doc_bounds = shard.document_starts.tolist()
    can_draw_random = n_docs > 1
    rows: list[tuple[int, int, int, int, bool, int]] = []
    for d in range(n_docs):
        i, doc_end, target = doc_bounds[d], doc_bounds[d + 1], targets[d]
        while i < doc_end:
            k = bisect_left(starts, starts[i] + target, i + 1, doc_end)
            n_chunk = k - i
            a_end = i + 1 if n_chunk < 2 else i + int(rng.integers(1, n_chunk))
            if can_draw_random and (n_chunk == 1 or rng.random() < 0.5):
                other = int(rng.integers(n_docs - 1))
                other += other >= d
                o_first, o_end = doc_bounds[other], doc_bounds[other + 1]
                b_first = int(rng.integers(o_first, o_end))
                b_target = max(target - (starts[a_end] - starts[i]), 1)
                b_end = bisect_left(starts, starts[b_first] + b_target, b_first + 1, o_end)
                rows.append((i, a_end, b_first, b_end, True, d))
                i = a_end  # the chunk's unused sentences go back to the document
            elif n_chunk >= 2:
                rows.append((i, a_end, a_end, k, False, d))
                i = k
            elif k < doc_end:
                rows.append((i, k, k, k + 1, False, d))
                i = k + 1
            else:
                i = k
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return InstanceSpans(empty, empty, empty, empty, np.zeros(0, dtype=bool), empty)
    table = np.array(rows, dtype=np.int64)
    sentence_starts = shard.sentence_starts
    a_start, b_start = sentence_starts[table[:, 0]], sentence_starts[table[:, 2]]
    a_total = sentence_starts[table[:, 1]] - a_start
    b_total = sentence_starts[table[:, 3]] - b_start
    a_len, b_len = truncated_pair_lengths(a_total, b_total, max_tokens)
    a_front = rng.binomial(a_total - a_len, 0.5)
    b_front = rng.binomial(b_total - b_len, 0.5)
    return InstanceSpans(a_start + a_front, a_len, b_start + b_front, b_len, table[:, 4].astype(bool), table[:, 5])


def build_instance_spans(
    shard: ShardTokens, rng: np.random.Generator, max_seq_length: int, short_seq_prob: float, nsp: bool
) -> InstanceSpans:
    build = build_pair_spans if nsp else build_single_segment_spans
    return build(shard, rng, max_seq_length, short_seq_prob)


@dataclass(frozen=True, slots=True)
class TokenRows:
    """A block of assembled, padded samples (before masking)."""

    input_ids: np.ndarray  # int32 [B, S]
    input_mask: np.ndarray  # int8 [B, S]
    segment_ids: np.ndarray  # int8 [B, S]
    lengths: np.ndarray  # int64 [B], real tokens including [CLS]/[SEP]


def assemble_tokens(tokens: np.ndarray, spans: InstanceSpans, max_seq_length: int, special: SpecialIds) -> TokenRows:
    """[CLS] a [SEP] (b [SEP]) padded with [PAD] to max_seq_length, for every span in the block."""
    n = len(spans)
    pos = np.arange(max_seq_length, dtype=np.int64)[None, :]
    a_len = spans.a_len[:, None]
    is_text = (pos >= 1) & (pos <= a_len)
    source = spans.a_start[:, None] + (pos - 1)
    has_b = spans.b_len > 0
    if has_b.any():
        b_first = a_len + 2
        in_b = (pos >= b_first) & (pos < b_first + spans.b_len[:, None])
        source = np.where(in_b, spans.b_start[:, None] + (pos - b_first), source)
        is_text |= in_b
    # Off-text positions point anywhere; mode="clip" keeps them in range and np.where drops them.
    input_ids = np.where(is_text, np.take(tokens, source, mode="clip"), special.pad).astype(np.int32, copy=False)
    rows = np.arange(n)
    input_ids[:, 0] = special.cls
    input_ids[rows, spans.a_len + 1] = special.sep
    with_b = np.flatnonzero(has_b)
    input_ids[with_b, spans.a_len[with_b] + spans.b_len[with_b] + 2] = special.sep
    lengths = spans.a_len + 2 + np.where(has_b, spans.b_len + 1, 0)
    real = pos < lengths[:, None]
    input_mask = real.astype(np.int8)
    segment_ids = (has_b[:, None] & (pos >= a_len + 2) & real).astype(np.int8)
    return TokenRows(input_ids, input_mask, segment_ids, lengths)
