"""Sample checks (sharebert.pipeline.mask.validate): each broken rule is found, on the right row."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from mask_fixtures import SMALL_VOCAB

from sharebert.pipeline import formats
from sharebert.pipeline.mask.instances import ShardTokens, build_instance_spans
from sharebert.pipeline.mask.masking import MaskingSpec
from sharebert.pipeline.mask.stage import make_samples
from sharebert.pipeline.mask.validate import ROWS_LISTED, SampleRules, check_sample_file, count_samples, find_bad_rows
from sharebert.tokenization import replacement_token_ids, special_ids

SP = special_ids(SMALL_VOCAB)
REPLACEMENT = replacement_token_ids(SMALL_VOCAB)
V = len(SMALL_VOCAB)
S, M = 32, 6


def _valid(nsp=False, rows=40, seed=0):
    rng = np.random.default_rng(seed)
    docs = [[rng.choice(REPLACEMENT, size=rng.integers(3, 12)).tolist() for _ in range(8)] for _ in range(40)]
    shard = ShardTokens.from_documents(docs)
    spans = build_instance_spans(shard, rng, S, 0.0, nsp)
    spans = spans.take(np.arange(min(rows, len(spans))))
    return make_samples(shard.tokens, spans, S, nsp, MaskingSpec(0.15, M, SP, REPLACEMENT), rng)


def _rules(nsp=False, strict=True, wwm=False):
    allowed = np.isin(np.arange(V), REPLACEMENT) if strict else None
    return SampleRules(V, SP, 0.15, S, M, nsp, wwm, allowed)


def _broken(arrays, rules, nsp=False):
    return {
        what: np.flatnonzero(rows).tolist() for what, rows in find_bad_rows(arrays, rules, nsp).items() if rows.any()
    }


def _first_masked_row(a):
    """A padded row with at least two masked positions."""
    ok = ((a["masked_lm_positions"] > 0).sum(axis=1) >= 2) & (a["input_mask"].sum(axis=1) < S - 1)
    return int(np.flatnonzero(ok)[0])


def _unmask_all_but_first(a, r):
    pos = a["masked_lm_positions"][r]
    for slot in range(1, M):
        if pos[slot] > 0:
            a["input_ids"][r, pos[slot]] = a["masked_lm_ids"][r, slot]
    a["masked_lm_positions"][r, 1:] = 0
    a["masked_lm_ids"][r, 1:] = 0


def test_valid_samples_pass():
    for nsp in (False, True):
        assert _broken(_valid(nsp), _rules(nsp), nsp) == {}


def _length(a, r):
    return int(a["input_mask"][r].sum())


BREAKS = {
    "input_mask": lambda a, r: a["input_mask"][r].__setitem__(S - 1, 1),  # a gap before the last position
    "vocabulary": lambda a, r: a["input_ids"][r].__setitem__(2, V + 3),
    "[CLS]": lambda a, r: a["input_ids"][r].__setitem__(0, REPLACEMENT[0]),
    "[SEP]": lambda a, r: a["input_ids"][r].__setitem__(_length(a, r) - 1, REPLACEMENT[0]),
    "padding": lambda a, r: a["input_ids"][r].__setitem__(S - 1, REPLACEMENT[0]),
    "segment_ids are not 0 on padding": lambda a, r: a["segment_ids"][r].__setitem__(S - 1, 1),
    "segment_ids are not all 0": lambda a, r: a["segment_ids"][r].__setitem__(1, 1),
    "increasing": lambda a, r: a["masked_lm_positions"][r].__setitem__(
        slice(0, 2), a["masked_lm_positions"][r, 1::-1].copy()
    ),
    "outside the text": lambda a, r: a["masked_lm_positions"][r].__setitem__(0, _length(a, r) - 1),
    "masked_lm_ids holds": lambda a, r: a["masked_lm_ids"][r].__setitem__(0, SP.mask),
    "unused masked_lm_ids": lambda a, r: a["masked_lm_ids"][r].__setitem__(M - 1, 7),
    "count": _unmask_all_but_first,
    "special token inside": lambda a, r: a["input_ids"][r].__setitem__(
        next(i for i in range(1, S) if i not in set(a["masked_lm_positions"][r].tolist())), SP.mask
    ),
    "random replacement": lambda a, r: a["input_ids"][r].__setitem__(int(a["masked_lm_positions"][r, 0]), SP.unk),
}


@pytest.mark.parametrize("key", list(BREAKS))
def test_each_broken_rule_is_found_on_its_row(key):
    arrays = _valid()
    r = _first_masked_row(arrays)
    BREAKS[key](arrays, r)
    broken = _broken(arrays, _rules())
    assert broken, key
    assert all(rows == [r] for rows in broken.values()), broken
    assert any(key in what for what in broken), broken


def test_reference_style_random_specials_pass_without_the_strict_rule():
    arrays = _valid()
    r = _first_masked_row(arrays)
    arrays["input_ids"][r, arrays["masked_lm_positions"][r, 0]] = SP.pad  # the reference may draw [PAD]
    assert _broken(arrays, _rules(strict=False)) == {}
    assert list(_broken(arrays, _rules(strict=True)).values()) == [[r]]


def test_nsp_rules():
    arrays = _valid(nsp=True)
    r = 3
    arrays["segment_ids"][r, 1] = 1
    arrays["next_sentence_labels"][r + 1] = 2
    broken = _broken(arrays, _rules(nsp=True), nsp=True)
    assert broken.pop("segment_ids do not switch 0 -> 1 once, right after a middle [SEP]") == [r]
    assert broken.pop("next_sentence_labels are not 0/1") == [r + 1]
    assert all(rows == [r] for rows in broken.values())


def test_whole_word_rule_allows_fewer_positions():
    arrays = _valid()
    r = _first_masked_row(arrays)
    _unmask_all_but_first(arrays, r)
    assert _broken(arrays, _rules(wwm=True)) == {}
    assert list(_broken(arrays, _rules(wwm=False))) == [
        "masked position count is not min(M, max(1, round(length * p)))"
    ]


def test_counts():
    arrays = _valid(rows=40)
    counts = count_samples(arrays, SP, nsp=False)
    assert counts.samples == 40
    assert counts.real_tokens == int(arrays["input_mask"].sum())
    assert counts.masked == int((arrays["masked_lm_positions"] > 0).sum())
    assert counts.masked_as_mask + counts.masked_kept + counts.masked_random == counts.masked
    assert counts.masked_as_mask == int((arrays["input_ids"] == SP.mask).sum())


def _write(path, arrays, **overrides):
    with h5py.File(path, "w") as f:
        for name, data in {**arrays, **overrides}.items():
            f.create_dataset(name, data=data)


def test_file_layout_problems(tmp_path):
    arrays = _valid()
    good = tmp_path / "train_shard_0.hdf5"
    _write(good, arrays)
    assert check_sample_file(good, _rules()).problems == []

    wrong_dtype = tmp_path / "a.hdf5"
    _write(wrong_dtype, arrays, input_mask=arrays["input_mask"].astype(np.int64))
    missing = tmp_path / "b.hdf5"
    _write(missing, {k: v for k, v in arrays.items() if k != "masked_lm_ids"})
    wide = tmp_path / "c.hdf5"
    _write(wide, arrays, masked_lm_positions=np.zeros((len(arrays["input_ids"]), M + 1), np.int32))
    messages = {p.name: [str(x) for x in check_sample_file(p, _rules()).problems] for p in (wrong_dtype, missing, wide)}
    assert messages == {
        "a.hdf5": [f"{wrong_dtype}: dataset input_mask has dtype int64, expected int8"],
        "b.hdf5": [f"{missing}: dataset masked_lm_ids is missing"],
        "c.hdf5": [f"{wide}: dataset masked_lm_positions has width {M + 1}, expected {M}"],
    }


def test_damaged_files_are_reported_not_raised(tmp_path):
    arrays = _valid()
    path = tmp_path / "x.hdf5"
    with h5py.File(path, "w") as f:
        for name, data in arrays.items():
            f.create_dataset(name, data=data, chunks=(8,) + data.shape[1:], compression="gzip")
    data = bytearray(path.read_bytes())
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not hdf5 at all")
    for p in (truncated, garbage):
        (problem,) = check_sample_file(p, _rules()).problems
        assert "not a readable HDF5 file" in str(problem) and str(p) in str(problem)


def test_many_bad_rows_are_listed_with_a_count():
    arrays = _valid(rows=40)
    arrays["input_ids"][:, 0] = REPLACEMENT[0]
    bad = find_bad_rows(arrays, _rules(), False)
    from sharebert.pipeline.mask.validate import _RowProblems

    collected = _RowProblems("f.hdf5")
    collected.add(bad, offset=100)
    (problem,) = collected.problems()
    assert problem.count == 40 and problem.rows == list(range(100, 100 + ROWS_LISTED))
    assert str(problem) == "f.hdf5: rows 100, 101, 102, 103, 104 and 35 more: input_ids[0] is not [CLS]"


def test_reference_layout_is_accepted(tmp_path):
    """Files as IntelLabs/academic-budget-bert writes them (no chunking options, gzip) pass."""
    arrays = _valid()
    path = tmp_path / "training_shard_0.hdf5"
    with h5py.File(path, "w") as f:
        for name, (dtype, _) in formats.SAMPLE_DATASETS.items():
            f.create_dataset(name, data=arrays[name], dtype=dtype, compression="gzip")
    assert check_sample_file(path, _rules(strict=False)).problems == []
