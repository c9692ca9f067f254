"""Shard placement: seeded train/test split, token balance within 5%, cutting of large documents."""

from __future__ import annotations

import numpy as np
import pytest

from sharebert.pipeline.prepare.balance import (
    MAX_IMBALANCE,
    BalanceError,
    cut_points,
    greedy_placement,
    held_out_documents,
    place_documents,
)


def corpus(seed: int, docs: int, low: int, high: int, sentence_range=(5, 60)):
    rng = np.random.default_rng(seed)
    sentences = {d: rng.integers(*sentence_range, size=int(rng.integers(low, high))) for d in range(docs)}
    tokens = np.array([sentences[d].sum() for d in range(docs)])
    calls: list[list[int]] = []

    def lengths(ids):
        calls.append(sorted(int(i) for i in ids))
        return {int(i): sentences[int(i)] for i in ids}

    return tokens, sentences, lengths, calls


def check_placement(placement, tokens, sentences, train_shards, test_shards):
    """Every token is placed exactly once, shards are within tolerance, parts tile their documents."""
    loads = np.zeros(train_shards + test_shards, dtype=np.int64)
    whole = placement.doc_shard >= 0
    np.add.at(loads, placement.doc_shard[whole], tokens[whole])
    for d in np.flatnonzero(~whole):
        mine = placement.part_doc == d
        starts, ends = placement.part_start[mine], placement.part_end[mine]
        assert starts[0] == 0 and ends[-1] == len(sentences[d]) and (starts[1:] == ends[:-1]).all()
        assert placement.part_number[mine].tolist() == list(range(1, mine.sum() + 1))
        for s, e, shard in zip(starts, ends, placement.part_shard[mine]):
            loads[shard] += sentences[d][s:e].sum()
    assert loads.tolist() == placement.shard_tokens.tolist()
    assert loads.sum() == tokens.sum()
    for split in (slice(0, train_shards), slice(train_shards, train_shards + test_shards)):
        split_loads = loads[split]
        if len(split_loads):
            assert split_loads.max() <= (1 + MAX_IMBALANCE) * split_loads.mean()
            assert split_loads.min() > 0


def test_many_documents_balance_without_cutting():
    tokens, sentences, lengths, calls = corpus(0, 400, 1, 150)
    placement = place_documents(tokens, 16, 2, 0.1, 42, lengths)
    check_placement(placement, tokens, sentences, 16, 2)
    assert len(placement.part_doc) == 0 and calls == []
    assert (placement.doc_shard >= 16).sum() == 40  # exactly round(400 * 0.1) test documents


def test_a_few_books_into_many_shards_are_cut_at_sentence_boundaries():
    tokens, sentences, lengths, calls = corpus(1, 5, 2000, 6000)
    placement = place_documents(tokens, 16, 1, 0.2, 7, lengths)
    check_placement(placement, tokens, sentences, 16, 1)
    assert len(placement.part_doc) > 0
    assert len(calls) >= 1  # sentence lengths were read only for the documents being cut


def test_placement_depends_only_on_the_seed():
    tokens, _, lengths, _ = corpus(2, 300, 1, 80)
    a = place_documents(tokens, 8, 2, 0.15, 1, lengths)
    b = place_documents(tokens, 8, 2, 0.15, 1, lengths)
    c = place_documents(tokens, 8, 2, 0.15, 2, lengths)
    assert all(np.array_equal(x, y) for x, y in zip(a.as_arrays().values(), b.as_arrays().values()))
    assert not np.array_equal(a.doc_shard, c.doc_shard)


def test_impossible_balance_says_how_many_shards_fit():
    sentences = {0: np.array([100, 3, 4]), 1: np.array([50]), 2: np.array([7, 8])}
    tokens = np.array([107, 50, 15])
    with pytest.raises(BalanceError, match=r"supports at most \d+ train shard"):
        place_documents(tokens, 8, 0, 0.0, 1, lambda ids: {int(i): sentences[int(i)] for i in ids})
    with pytest.raises(BalanceError, match="too few for a train and a test split"):
        place_documents(np.array([10]), 1, 1, 0.5, 1, lambda ids: {})


def test_test_split_and_cut_points():
    is_test = held_out_documents(1000, 0.1, 3)
    assert is_test.sum() == 100 and np.array_equal(is_test, held_out_documents(1000, 0.1, 3))
    assert held_out_documents(5, 0.01, 3).sum() == 1 and held_out_documents(5, 0.0, 3).sum() == 0
    assert cut_points(np.array([10, 10, 10, 10]), 2) == [0, 2, 4]
    assert cut_points(np.array([100, 1, 1]), 3) == [0, 1, 3]
    assert cut_points(np.array([5]), 4) == [0, 1]
    shard_of, loads = greedy_placement(np.array([5, 5, 5, 5, 20]), 2, 0)
    assert sorted(loads.tolist()) == [20, 20]
