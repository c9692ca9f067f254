"""Instance building (sharebert.pipeline.mask.instances): property tests against BERT's rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebert.pipeline.mask.instances import (
    ShardTokens,
    assemble_tokens,
    build_pair_spans,
    build_single_segment_spans,
    chunk_documents,
    draw_target_lengths,
    truncated_pair_lengths,
)
from sharebert.tokenization import SpecialIds

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
FIRST_WORD = 10

documents = st.lists(
    st.lists(st.lists(st.integers(FIRST_WORD, 99), min_size=1, max_size=70), min_size=1, max_size=12),
    min_size=1,
    max_size=12,
)
PROPERTY = settings(max_examples=60, deadline=None)


def _document_token_range(shard: ShardTokens, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = shard.sentence_starts
    return starts[shard.document_starts[d]], starts[shard.document_starts[d + 1]]


@PROPERTY
@given(docs=documents, max_tokens=st.integers(2, 60), seed=st.integers(0, 2**16))
def test_chunks_are_greedy_runs_of_whole_sentences(docs, max_tokens, seed):
    shard = ShardTokens.from_documents(docs)
    targets = draw_target_lengths(np.random.default_rng(seed), shard.n_documents, max_tokens, 0.5)
    first, end, doc = chunk_documents(shard, targets)
    starts = shard.sentence_starts
    for d in range(shard.n_documents):
        mine = np.flatnonzero(doc == d)
        # The chunks of a document tile its sentences in order.
        assert first[mine[0]] == shard.document_starts[d]
        assert end[mine[-1]] == shard.document_starts[d + 1]
        assert np.array_equal(first[mine[1:]], end[mine[:-1]])
        sizes = starts[end[mine]] - starts[first[mine]]
        without_last = starts[end[mine] - 1] - starts[first[mine]]
        # Every chunk but the document's last reaches the target; none grows past the first sentence that does.
        assert np.all(sizes[:-1] >= targets[d])
        assert np.all(without_last < targets[d])


@PROPERTY
@given(docs=documents, seq_len=st.integers(8, 64), short=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 2**16))
def test_single_segment_spans_stay_inside_their_document(docs, seq_len, short, seed):
    shard = ShardTokens.from_documents(docs)
    spans = build_single_segment_spans(shard, np.random.default_rng(seed), seq_len, short)
    assert len(spans) >= shard.n_documents
    assert np.all(spans.a_len >= 1) and np.all(spans.a_len <= seq_len - 2)
    assert np.all(spans.b_len == 0) and not spans.random_next.any()
    lo, hi = _document_token_range(shard, spans.document)
    assert np.all(spans.a_start >= lo) and np.all(spans.a_start + spans.a_len <= hi)
    # Spans of one document follow each other without overlap.
    for d in range(shard.n_documents):
        mine = np.flatnonzero(spans.document == d)
        assert np.all(spans.a_start[mine[1:]] >= spans.a_start[mine[:-1]] + spans.a_len[mine[:-1]])


def test_untruncated_chunks_reproduce_the_document():
    rng = np.random.default_rng(3)
    docs = [[rng.integers(FIRST_WORD, 99, size=rng.integers(1, 9)).tolist() for _ in range(20)] for _ in range(30)]
    shard = ShardTokens.from_documents(docs)
    spans = build_single_segment_spans(shard, rng, 128, 0.2)  # sentences shorter than any target: no truncation
    for d in range(len(docs)):
        mine = np.flatnonzero(spans.document == d)
        text = np.concatenate([shard.tokens[s : s + n] for s, n in zip(spans.a_start[mine], spans.a_len[mine])])
        assert np.array_equal(text, shard.document_tokens(d))


def test_truncation_takes_tokens_from_both_ends_evenly():
    shard = ShardTokens.from_documents([[list(range(FIRST_WORD, FIRST_WORD + 300))]] * 400)
    spans = build_single_segment_spans(shard, np.random.default_rng(0), 32, 0.0)
    front = spans.a_start - shard.sentence_starts[shard.document_starts[spans.document]]
    assert np.all(spans.a_len == 30)
    removed = 300 - 30
    assert abs(front.mean() - removed / 2) < 2.0  # Binomial(270, 1/2): mean 135, sd of the mean ~0.4
    assert front.min() > 0 and front.max() < removed


@pytest.mark.parametrize("max_tokens", [2, 5, 126])
def test_target_lengths_follow_short_seq_prob(max_tokens):
    targets = draw_target_lengths(np.random.default_rng(1), 40_000, max_tokens, 0.1)
    short = targets < max_tokens
    expected_short = 0.1 * (max_tokens - 2) / (max_tokens - 1)  # a short draw may hit max_tokens itself
    assert abs(short.mean() - expected_short) < 0.006
    assert targets.min() >= 2 and targets.max() == max_tokens
    if max_tokens > 2:
        assert targets.min() == 2


def _reference_pair_truncation(a: int, b: int, max_tokens: int) -> tuple[int, int]:
    """BERT's truncate_seq_pair, lengths only."""
    while a + b > max_tokens:
        if a > b:
            a -= 1
        else:
            b -= 1
    return a, b


def test_pair_truncation_matches_bert():
    a, b = np.meshgrid(np.arange(1, 60), np.arange(1, 60))
    for max_tokens in (2, 7, 30, 61, 125):
        got_a, got_b = truncated_pair_lengths(a.ravel(), b.ravel(), max_tokens)
        want = np.array([_reference_pair_truncation(x, y, max_tokens) for x, y in zip(a.ravel(), b.ravel())])
        assert np.array_equal(got_a, want[:, 0]) and np.array_equal(got_b, want[:, 1])


@PROPERTY
@given(docs=documents, seq_len=st.integers(8, 64), seed=st.integers(0, 2**16))
def test_pair_spans(docs, seq_len, seed):
    shard = ShardTokens.from_documents(docs)
    spans = build_pair_spans(shard, np.random.default_rng(seed), seq_len, 0.2)
    if not len(spans):
        assert shard.n_documents == 1
        return
    assert np.all(spans.a_len >= 1) and np.all(spans.b_len >= 1)
    assert np.all(spans.a_len + spans.b_len <= seq_len - 3)
    lo, hi = _document_token_range(shard, spans.document)
    assert np.all(spans.a_start >= lo) and np.all(spans.a_start + spans.a_len <= hi)
    b_doc = np.searchsorted(shard.sentence_starts[shard.document_starts], spans.b_start, side="right") - 1
    assert np.array_equal(b_doc != spans.document, spans.random_next)
    actual = ~spans.random_next
    assert np.all(spans.b_start[actual] >= spans.a_start[actual] + spans.a_len[actual])


def test_random_next_is_about_half():
    rng = np.random.default_rng(5)
    docs = [[rng.integers(FIRST_WORD, 99, size=rng.integers(5, 30)).tolist() for _ in range(40)] for _ in range(60)]
    spans = build_pair_spans(ShardTokens.from_documents(docs), rng, 128, 0.1)
    # 1/2 of the multi-sentence chunks plus every one-sentence chunk: a little above 1/2.
    assert 0.48 < spans.random_next.mean() < 0.62


@PROPERTY
@given(docs=documents, seq_len=st.integers(8, 40), nsp=st.booleans(), seed=st.integers(0, 2**16))
def test_assembled_rows(docs, seq_len, nsp, seed):
    shard = ShardTokens.from_documents(docs)
    build = build_pair_spans if nsp else build_single_segment_spans
    spans = build(shard, np.random.default_rng(seed), seq_len, 0.3)
    rows = assemble_tokens(shard.tokens, spans, seq_len, SPECIAL)
    assert rows.input_ids.dtype == np.int32 and rows.input_ids.shape == (len(spans), seq_len)
    for r in range(len(spans)):
        ids, n = rows.input_ids[r], rows.lengths[r]
        a = shard.tokens[spans.a_start[r] : spans.a_start[r] + spans.a_len[r]]
        b = shard.tokens[spans.b_start[r] : spans.b_start[r] + spans.b_len[r]]
        expected = [SPECIAL.cls, *a, SPECIAL.sep] + ([*b, SPECIAL.sep] if len(b) else [])
        assert ids[:n].tolist() == expected
        assert np.all(ids[n:] == SPECIAL.pad)
        assert rows.input_mask[r].tolist() == [1] * n + [0] * (seq_len - n)
        assert rows.segment_ids[r].tolist() == [0] * (len(a) + 2) + [1] * (n - len(a) - 2) + [0] * (seq_len - n)
