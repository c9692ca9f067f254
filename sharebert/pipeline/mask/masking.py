"""Masked-LM predictions for a block of assembled samples (pure numpy, one call per block of rows).

Per row, as BERT's create_masked_lm_predictions (docs/specification.md section 9):
- candidates are the real tokens except [CLS]/[SEP];
- n = min(M, max(1, round(length * masked_lm_prob))) positions are chosen uniformly at random, where
  length counts every real token *including* [CLS] and [SEP] (as the reference does; round is
  Python's/numpy's round-half-to-even); n never exceeds the number of candidates;
- each chosen token becomes [MASK] with probability 0.8, stays with 0.1, and becomes a random token
  with 0.1. Random tokens come from the non-special vocabulary (tokenization.replacement_token_ids),
  a deliberate change from the reference, which may draw [PAD], [CLS] or [unusedN].
With whole-word masking (Google's variant) whole words (a token plus its following ## pieces) are
taken in random order while they fit in n; a word that would overflow n is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...tokenization import SpecialIds

MASK_PROB = 0.8
KEEP_PROB = 0.1  # the remaining 0.1 becomes a random token


@dataclass(frozen=True)
class MaskingSpec:
    masked_lm_prob: float
    max_predictions_per_seq: int
    special: SpecialIds
    replacement_ids: np.ndarray  # int32, the ids a masked token may be replaced with
    continuation: np.ndarray | None = None  # bool [V], True for "##" pieces; set -> whole-word masking


@dataclass(frozen=True, slots=True)
class MaskedRows:
    input_ids: np.ndarray  # int32 [B, S], with the masked tokens replaced
    masked_lm_positions: np.ndarray  # int32 [B, M], ascending, 0 in unused slots
    masked_lm_ids: np.ndarray  # int32 [B, M], the original tokens, 0 in unused slots


def predictions_per_row(
    lengths: np.ndarray, masked_lm_prob: float, max_predictions: int, candidates: np.ndarray
) -> np.ndarray:
    """How many positions a row gets: min(M, max(1, round(length * p))), capped by its candidates."""
    wanted = np.rint(np.asarray(lengths, dtype=np.int64) * masked_lm_prob).astype(np.int64)
    return np.minimum(np.minimum(np.maximum(wanted, 1), max_predictions), candidates)


def word_continuation_table(vocab: list[str]) -> np.ndarray:
    """bool [V]: True for WordPiece continuation pieces ("##..."), used by whole-word masking."""
    return np.fromiter((tok.startswith("##") for tok in vocab), dtype=bool, count=len(vocab))


def mask_rows(input_ids: np.ndarray, input_mask: np.ndarray, spec: MaskingSpec, rng: np.random.Generator) -> MaskedRows:
    rows = input_ids.shape[0]
    max_pred = spec.max_predictions_per_seq
    candidate = input_mask.astype(bool) & (input_ids != spec.special.cls) & (input_ids != spec.special.sep)
    n_pred = predictions_per_row(input_mask.sum(axis=1), spec.masked_lm_prob, max_pred, candidate.sum(axis=1))
    if spec.continuation is None:
        chosen = _choose_tokens(candidate, n_pred, max_pred, rng)
    else:
        chosen = _choose_whole_words(input_ids, candidate, n_pred, spec.continuation, rng)
    # np.nonzero walks row-major: rows in order, positions ascending within a row.
    row, position = np.nonzero(chosen)
    per_row = chosen.sum(axis=1)
    slot = np.arange(len(row)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    original = input_ids[row, position]

    action = rng.random(len(row))
    random_tokens = spec.replacement_ids[rng.integers(len(spec.replacement_ids), size=len(row))]
    shown = np.where(action < MASK_PROB, spec.special.mask, original)
    shown = np.where(action >= MASK_PROB + KEEP_PROB, random_tokens, shown)
    out = input_ids.copy()
    out[row, position] = shown
    positions = np.zeros((rows, max_pred), dtype=np.int32)
    labels = np.zeros((rows, max_pred), dtype=np.int32)
    positions[row, slot] = position
    labels[row, slot] = original
    return MaskedRows(out, positions, labels)


def _choose_tokens(candidate: np.ndarray, n_pred: np.ndarray, max_pred: int, rng: np.random.Generator) -> np.ndarray:
    """bool [B, S]: n_pred[r] of the candidates of row r, a uniformly random subset.

    Floyd's sampling, all rows at once: M rounds of vector ops instead of a sort per row. Round k
    (for rows with k < n) draws t uniform in [0, c - n + k] and takes candidate t, or candidate
    c - n + k when t is already taken. Candidate indices are then mapped to positions.
    """
    rows, seq_len = candidate.shape
    n_candidates = candidate.sum(axis=1)
    taken = np.zeros((rows, seq_len), dtype=bool)  # by candidate index
    row_index = np.arange(rows)
    for k in range(int(n_pred.max(initial=0))):
        active = k < n_pred
        top = np.where(active, n_candidates - n_pred + k, 0)
        t = rng.integers(0, top + 1)
        pick = np.where(taken[row_index, t], top, t)
        taken[row_index[active], pick[active]] = True
    candidate_index = np.cumsum(candidate, axis=1) - 1
    return candidate & np.take_along_axis(taken, np.maximum(candidate_index, 0), axis=1)


def _choose_whole_words(
    input_ids: np.ndarray, candidate: np.ndarray, n_pred: np.ndarray, continuation: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """bool [B, S]: whole words taken in random order while they fit in n_pred (Google's rule)."""
    rows, seq_len = candidate.shape
    previous_candidate = np.zeros_like(candidate)
    previous_candidate[:, 1:] = candidate[:, :-1]
    word_start = candidate & ~(continuation[input_ids] & previous_candidate)
    word_of = np.cumsum(word_start, axis=1) - 1  # word index of each candidate position
    n_words = word_start.sum(axis=1)
    flat_word = (np.arange(rows)[:, None] * seq_len + word_of)[candidate]
    word_size = np.bincount(flat_word, minlength=rows * seq_len).reshape(rows, seq_len)

    keys = rng.random((rows, seq_len))
    keys[np.arange(seq_len)[None, :] >= n_words[:, None]] = 2.0
    order = np.argsort(keys, axis=1)  # words in random order; non-words last
    size_in_order = np.take_along_axis(word_size, order, axis=1)
    taken_in_order = np.zeros((rows, seq_len), dtype=bool)
    count = np.zeros(rows, dtype=np.int64)
    for r in range(int(n_words.max(initial=0))):
        size = size_in_order[:, r]
        fits = (size > 0) & (count + size <= n_pred)
        taken_in_order[:, r] = fits
        count += np.where(fits, size, 0)
        if np.all(count >= n_pred):
            break
    taken_word = np.zeros((rows, seq_len), dtype=bool)
    np.put_along_axis(taken_word, order, taken_in_order, axis=1)
    return candidate & np.take_along_axis(taken_word, np.maximum(word_of, 0), axis=1)
