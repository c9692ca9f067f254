"""Masking (sharebert.pipeline.mask.masking) and whole samples (mask.make_samples): BERT's rules hold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mask_fixtures import SMALL_VOCAB

from sharebert.pipeline import formats
from sharebert.pipeline.mask.instances import ShardTokens, assemble_tokens, build_instance_spans
from sharebert.pipeline.mask.masking import MaskingSpec, mask_rows, predictions_per_row, word_continuation_table
from sharebert.pipeline.mask.stage import make_samples
from sharebert.pipeline.mask.validate import SampleRules, find_bad_rows
from sharebert.tokenization import replacement_token_ids, special_ids

SPECIAL = special_ids(SMALL_VOCAB)
REPLACEMENT = replacement_token_ids(SMALL_VOCAB)
CONTINUATION = word_continuation_table(SMALL_VOCAB)
ALLOWED = np.isin(np.arange(len(SMALL_VOCAB)), REPLACEMENT)
PROPERTY = settings(max_examples=40, deadline=None)

token = st.sampled_from(REPLACEMENT.tolist())
documents = st.lists(
    st.lists(st.lists(token, min_size=1, max_size=50), min_size=1, max_size=10), min_size=1, max_size=10
)


def _spec(p=0.15, m=20, wwm=False):
    return MaskingSpec(p, m, SPECIAL, REPLACEMENT, CONTINUATION if wwm else None)


def _samples(docs, seq_len, spec, nsp, seed):
    rng = np.random.default_rng(seed)
    shard = ShardTokens.from_documents(docs)
    spans = build_instance_spans(shard, rng, seq_len, 0.2, nsp)
    return shard, spans, make_samples(shard.tokens, spans, seq_len, nsp, spec, rng)


def _rules(spec, seq_len, nsp):
    return SampleRules(
        vocab_size=len(SMALL_VOCAB),
        special=SPECIAL,
        masked_lm_prob=spec.masked_lm_prob,
        max_seq_length=seq_len,
        max_predictions_per_seq=spec.max_predictions_per_seq,
        nsp=nsp,
        whole_word_masking=spec.continuation is not None,
        replacement_allowed=ALLOWED,
    )


@PROPERTY
@given(
    docs=documents,
    seq_len=st.integers(8, 72),
    p=st.sampled_from([0.05, 0.15, 0.4, 1.0]),
    m=st.integers(1, 30),
    nsp=st.booleans(),
    wwm=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_samples_obey_every_rule(docs, seq_len, p, m, nsp, wwm, seed):
    m = min(m, seq_len - 2)
    spec = _spec(p, m, wwm)
    shard, spans, arrays = _samples(docs, seq_len, spec, nsp, seed)
    bad = find_bad_rows(arrays, _rules(spec, seq_len, nsp), nsp)
    assert {what: np.flatnonzero(rows).tolist() for what, rows in bad.items() if rows.any()} == {}

    # Unmasked tokens are the source text; labels are the original tokens at the masked positions.
    original = assemble_tokens(shard.tokens, spans, seq_len, SPECIAL).input_ids
    pos, lab = arrays["masked_lm_positions"], arrays["masked_lm_ids"]
    used = pos > 0
    rows = np.nonzero(used)[0]
    assert np.array_equal(original[rows, pos[used]], lab[used])
    restored = arrays["input_ids"].copy()
    restored[rows, pos[used]] = lab[used]
    assert np.array_equal(restored, original)
    for name, (dtype, _) in formats.SAMPLE_DATASETS.items():
        assert arrays[name].dtype == np.dtype(dtype)
    assert (formats.NSP_DATASET[0] in arrays) == nsp


@PROPERTY
@given(docs=documents, seq_len=st.integers(8, 72), seed=st.integers(0, 2**16))
def test_whole_word_masking_masks_whole_words(docs, seq_len, seed):
    spec = _spec(0.3, 20, wwm=True)
    shard, spans, arrays = _samples(docs, seq_len, spec, False, seed)
    original = assemble_tokens(shard.tokens, spans, seq_len, SPECIAL).input_ids
    masked = np.zeros(original.shape, dtype=bool)
    pos = arrays["masked_lm_positions"]
    masked[np.nonzero(pos > 0)[0], pos[pos > 0]] = True
    length = arrays["input_mask"].sum(axis=1)
    for r in range(len(original)):
        for i in range(2, length[r] - 1):  # a "##" piece inside the text belongs to the word before it
            if CONTINUATION[original[r, i]]:
                assert masked[r, i] == masked[r, i - 1], (r, i)


def test_count_uses_pythons_round_of_the_length_with_specials():
    lengths = np.arange(3, 600)
    for p in (0.15, 0.1, 0.5, 0.33):
        want = [min(20, max(1, round(n * p)), n - 2) for n in lengths]
        assert predictions_per_row(lengths, p, 20, lengths - 2).tolist() == want
    assert predictions_per_row(np.array([3]), 1.0, 20, np.array([1])).tolist() == [1]  # capped by candidates


def _many_rows(n_rows=4000, seq_len=64, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.full((n_rows, seq_len), SPECIAL.pad, dtype=np.int32)
    length = np.full(n_rows, seq_len)
    ids[:, 1:-1] = rng.choice(REPLACEMENT, size=(n_rows, seq_len - 2))
    ids[:, 0], ids[:, -1] = SPECIAL.cls, SPECIAL.sep
    mask = (np.arange(seq_len)[None, :] < length[:, None]).astype(np.int8)
    return ids, mask, rng


def test_eighty_ten_ten_and_replacements_are_never_special():
    ids, mask, rng = _many_rows()
    out = mask_rows(ids, mask, _spec(0.15, 20), rng)
    used = out.masked_lm_positions > 0
    rows = np.nonzero(used)[0]
    shown = out.input_ids[rows, out.masked_lm_positions[used]]
    labels = out.masked_lm_ids[used]
    as_mask = shown == SPECIAL.mask
    kept = shown == labels
    random = ~as_mask & ~kept
    n = used.sum()  # 4000 rows x 10 = 40,000 masked tokens: sd of a fraction <= 0.0025
    assert abs(as_mask.mean() - 0.8) < 0.01
    assert abs(kept.mean() - 0.1 - 0.1 / len(REPLACEMENT)) < 0.01
    assert abs(random.mean() - 0.1) < 0.01
    assert n == 4000 * 10  # round(64 * 0.15) = 10
    assert ALLOWED[shown[random]].all()


def test_positions_are_uniform_over_the_candidates():
    ids, mask, rng = _many_rows(n_rows=6000, seq_len=32)
    out = mask_rows(ids, mask, _spec(0.15, 20), rng)
    pos = out.masked_lm_positions
    hits = np.bincount(pos[pos > 0], minlength=32)
    assert hits[0] == 0 and hits[31] == 0  # never [CLS] / [SEP]
    expected = 6000 * 5 / 30  # round(32 * .15) = 5 of 30 candidates
    assert np.all(np.abs(hits[1:31] - expected) < 5 * np.sqrt(expected))


def test_masking_is_a_function_of_the_seed():
    ids, mask, _ = _many_rows(n_rows=50)
    a = mask_rows(ids, mask, _spec(), np.random.default_rng(7))
    b = mask_rows(ids, mask, _spec(), np.random.default_rng(7))
    c = mask_rows(ids, mask, _spec(), np.random.default_rng(8))
    assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.masked_lm_positions, b.masked_lm_positions)
    assert not np.array_equal(a.masked_lm_positions, c.masked_lm_positions)


@pytest.mark.parametrize("wwm", [False, True])
def test_short_rows_and_empty_blocks(wwm):
    spec = _spec(0.15, 20, wwm)
    ids = np.array([[SPECIAL.cls, REPLACEMENT[0], SPECIAL.sep, SPECIAL.pad]], dtype=np.int32)
    out = mask_rows(ids, np.array([[1, 1, 1, 0]], dtype=np.int8), spec, np.random.default_rng(0))
    assert out.masked_lm_positions[0].tolist() == [1] + [0] * 19
    empty = mask_rows(ids[:0], np.zeros((0, 4), np.int8), spec, np.random.default_rng(0))
    assert empty.masked_lm_positions.shape == (0, 20)
