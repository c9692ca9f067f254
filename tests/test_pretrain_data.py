"""The pretraining loader: manifest checks, the epoch order, rank slices, exact resume, prefetching."""

from __future__ import annotations

import itertools
import json

import h5py
import numpy as np
import pytest
import torch
from samples_fixture import row_numbers, write_numbered_samples, write_samples

from sharebert.errors import DataError
from sharebert.pipeline import formats
from sharebert.trainer.pretrain import data

UNEVEN = [3000, 10, 1500, 777, 1, 2049]


def layout(rank=0, world=1, mb=64, seed=7, block_rows=256, window_blocks=3):
    return data.LoaderLayout(
        seed=seed, world_size=world, rank=rank, micro_batch_size=mb, block_rows=block_rows, window_blocks=window_blocks
    )


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_epoch_plan_deals_disjoint_balanced_slices_with_equal_batch_counts(world):
    plans = [data.epoch_plan(UNEVEN, layout(r, world), epoch=0) for r in range(world)]
    all_blocks = data.split_into_blocks(UNEVEN, 256)
    dealt = [b for p in plans for b in p.blocks]
    assert sorted(dealt, key=lambda b: (b.file, b.start)) == all_blocks  # every block once, on one rank
    assert len({p.micro_batches for p in plans}) == 1
    loads = [sum(b.rows for b in p.blocks) for p in plans]
    assert max(loads) - min(loads) <= 256
    assert all(load >= plans[0].micro_batches * 64 for load in loads)
    assert plans[0].micro_batches == min(loads) // 64


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = data.epoch_plan(UNEVEN, layout(seed=1), epoch=0)
    assert a == data.epoch_plan(UNEVEN, layout(seed=1), epoch=0)
    assert a.blocks != data.epoch_plan(UNEVEN, layout(seed=1), epoch=1).blocks
    assert a.blocks != data.epoch_plan(UNEVEN, layout(seed=2), epoch=0).blocks


def test_ranks_see_disjoint_rows_and_each_row_at_most_once_per_epoch(tmp_path):
    rows = [700, 30, 450, 5]
    samples = data.open_training_samples(
        write_numbered_samples(tmp_path, rows), vocab_size=sum(rows) + 13, max_position_embeddings=8
    )
    world, mb = 3, 16
    seen = []
    for rank in range(world):
        lay = layout(rank, world, mb=mb, block_rows=64)
        n = data.micro_batches_per_epoch(rows, lay)
        batches = list(itertools.islice(data.train_batches(samples, lay, data.DataPosition()), n))
        assert batches[-1].position == data.DataPosition(1, 0)
        seen.append([x for b in batches for x in row_numbers(b.inputs["input_ids"])])
    assert len({len(s) for s in seen}) == 1  # same number of samples on every rank
    flat = [x for s in seen for x in s]
    assert len(flat) == len(set(flat))  # disjoint, no repeats
    assert sum(rows) - len(flat) < world * (64 + mb)  # only the tail that does not fill a micro-batch is left
    assert flat[:50] != sorted(flat[:50])  # shuffled


def test_resuming_from_a_position_gives_exactly_the_same_batches(tmp_path):
    samples = data.open_training_samples(
        write_numbered_samples(tmp_path, [300, 45, 260]), vocab_size=618, max_position_embeddings=8
    )
    lay = layout(rank=1, world=2, mb=10, block_rows=32, window_blocks=2)
    per_epoch = data.micro_batches_per_epoch(samples.train_rows, lay)
    straight = list(itertools.islice(data.train_batches(samples, lay, data.DataPosition()), 3 * per_epoch))
    for cut in (1, 7, per_epoch - 1, per_epoch, per_epoch + 5):
        resumed = data.train_batches(samples, lay, straight[cut - 1].position)
        for expected in straight[cut : cut + per_epoch]:
            got = next(resumed)
            assert got.position == expected.position
            for k in expected.inputs:
                assert torch.equal(got.inputs[k], expected.inputs[k]), (cut, k)


def test_batches_carry_model_inputs_with_labels_on_used_slots_only(tmp_path):
    samples = data.open_training_samples(write_samples(tmp_path, [50], []), vocab_size=1024, max_position_embeddings=32)
    batch = next(data.train_batches(samples, layout(mb=8), data.DataPosition()))
    x = batch.inputs
    assert set(x) == {"input_ids", "token_type_ids", "attention_mask", "masked_lm_positions", "labels"}
    assert all(t.dtype == torch.int64 for t in x.values())
    assert x["input_ids"].shape == (8, 32) and x["labels"].shape == (8, 5)
    used = x["masked_lm_positions"] > 0
    assert (x["labels"][~used] == -100).all() and (x["labels"][used] >= 5).all()
    assert (x["input_ids"].gather(1, x["masked_lm_positions"])[used] == 4).all()  # [MASK] at the masked positions


def test_validation_covers_a_fixed_subset_split_across_ranks(tmp_path):
    samples = data.open_training_samples(
        write_numbered_samples(tmp_path, [10], [300, 170]), vocab_size=493, max_position_embeddings=8
    )
    per_rank = [
        [
            x
            for b in data.validation_batches(samples, layout(r, 2, mb=32, block_rows=64), 400)
            for x in row_numbers(b["input_ids"])
        ]
        for r in range(2)
    ]
    flat = per_rank[0] + per_rank[1]
    assert len(flat) == 400 == len(set(flat))
    again = [
        x
        for b in data.validation_batches(samples, layout(0, 2, mb=32, block_rows=64), 400)
        for x in row_numbers(b["input_ids"])
    ]
    assert again == per_rank[0]


def test_prefetcher_hands_over_items_and_errors():
    with data.Prefetcher(lambda: iter(range(5)), depth=2) as p:
        assert list(p) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise DataError("boom.hdf5: broken")

    p = data.Prefetcher(failing)
    assert next(p) == 1
    with pytest.raises(DataError, match="boom"):
        next(p)


def test_prefetcher_close_stops_an_endless_producer():
    p = data.Prefetcher(lambda: itertools.count(), depth=3)
    assert [next(p) for _ in range(10)] == list(range(10))
    p.close()


# ------------------------------------------------------------------------------------ bad input
def test_missing_manifest_is_refused(tmp_path):
    with pytest.raises(DataError, match="manifest.json: missing"):
        data.open_training_samples(tmp_path, vocab_size=1024, max_position_embeddings=128)


def test_vocab_size_disagreement_is_refused(tmp_path):
    write_samples(tmp_path, [20], [])
    with pytest.raises(DataError, match="vocab of 1024 tokens but the model's vocab_size is 30522"):
        data.open_training_samples(tmp_path, vocab_size=30522, max_position_embeddings=128)


def test_sequence_length_disagreement_is_refused(tmp_path):
    write_samples(tmp_path, [20], [], seq_len=32)
    with pytest.raises(DataError, match="32 tokens long but the model has only max_position_embeddings=16"):
        data.open_training_samples(tmp_path, vocab_size=1024, max_position_embeddings=16)


def test_a_file_with_the_wrong_shape_is_refused(tmp_path):
    write_samples(tmp_path, [20], [])
    path = tmp_path / "train_shard_0.hdf5"
    with h5py.File(path, "r+") as f:
        del f["masked_lm_ids"]
        f.create_dataset("masked_lm_ids", data=np.zeros((20, 3), np.int32))
    manifest = json.loads((tmp_path / formats.MANIFEST_FILE).read_text())
    manifest["files"][0]["bytes"] = path.stat().st_size
    (tmp_path / formats.MANIFEST_FILE).write_text(json.dumps(manifest))
    expected = r"train_shard_0.hdf5: dataset 'masked_lm_ids' is int32\[20, 3\], expected int32\[20, 5\]"
    with pytest.raises(DataError, match=expected):
        data.open_training_samples(tmp_path, vocab_size=1024, max_position_embeddings=32)


def test_validation_needs_test_files(tmp_path):
    write_samples(tmp_path, [20], [])
    with pytest.raises(DataError, match="no test samples"):
        data.open_training_samples(tmp_path, vocab_size=1024, max_position_embeddings=32, need_test=True)


def test_too_few_samples_for_the_ranks_is_an_error(tmp_path):
    samples = data.open_training_samples(write_samples(tmp_path, [20], []), vocab_size=1024, max_position_embeddings=32)
    with pytest.raises(DataError, match="too few"):
        next(data.train_batches(samples, layout(0, 2, mb=16), data.DataPosition()))


def test_a_position_rescales_to_another_world_size_by_samples_seen():
    assert data.rescale_position(data.DataPosition(3, 10), 2 * 8, 4 * 8) == data.DataPosition(3, 5)
    assert data.rescale_position(data.DataPosition(0, 7), 16, 16) == data.DataPosition(0, 7)
