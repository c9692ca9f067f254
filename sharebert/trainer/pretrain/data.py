"""Pretraining data: the checked SAMPLES_DIR, and a streaming, resumable, rank-aware batch loader.

The order of an epoch is a pure function of (seed, epoch, world size):
  1. every train file is cut into row blocks of HDF5_CHUNK_ROWS rows (one compressed chunk each);
  2. the blocks are permuted by (seed, epoch) and dealt to the ranks, each block to the rank holding the
     fewest rows so far, so the ranks' row counts differ by less than one block;
  3. every rank computes the same deal (no communication) and keeps the common number of full
     micro-batches, so all ranks run exactly the same number of steps whatever the file sizes;
  4. a rank reads its blocks in windows of a few blocks and permutes the rows of each window by a seeded
     permutation; micro-batches are cut from that stream.
The data position is therefore just (epoch, micro-batches consumed): resuming mid-file is exact and
reads nothing to skip ahead. Files are read block by block (never whole) in a background thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import DataError, file_error
from ...fileio import sha256_file
from ...pipeline import formats
from ...tokenization import read_vocab

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label of a mask slot without a target (the model's ignore_index)
# Tags that keep the seeded streams apart: block order, row order inside a window, validation subset.
_BLOCK_ORDER, _WINDOW_ORDER, _VALIDATION_ORDER = 1, 2, 3
_OPEN_FILES = 32  # HDF5 files kept open by a reader


# ------------------------------------------------------------------------------------ the samples
@dataclass(frozen=True)
class SampleFileRef:
    path: Path
    rows: int


@dataclass(frozen=True)
class TrainingSamples:
    """A SAMPLES_DIR whose manifest, files and shapes have been checked against the model."""

    folder: Path
    manifest: formats.Manifest
    train: tuple[SampleFileRef, ...]
    test: tuple[SampleFileRef, ...]

    @property
    def train_rows(self) -> list[int]:
        return [f.rows for f in self.train]

    @property
    def mean_train_file_rows(self) -> float:
        return sum(self.train_rows) / len(self.train)

    def vocab_file(self) -> Path:
        """SAMPLES_DIR/vocab.txt (`sharebert mask` copies it there), checked against the manifest: its
        sha256, and its size, which the model's vocab_size is."""
        path = self.folder / formats.VOCAB_FILE
        if not path.exists():
            raise file_error(path, "missing: `sharebert mask` copies the vocab next to the samples")
        if sha256_file(path) != self.manifest.vocab.get("sha256"):
            raise file_error(
                path, f"not the vocab the samples were made with (sha256 differs from {formats.MANIFEST_FILE})"
            )
        tokens = len(read_vocab(path))
        if tokens != self.manifest.vocab_size:
            raise file_error(path, f"{tokens} tokens but {formats.MANIFEST_FILE} says {self.manifest.vocab_size}")
        return path


def open_training_samples(
    folder, vocab_size: int, max_position_embeddings: int, nsp: bool = False, need_test: bool = False
) -> TrainingSamples:
    """Read and check SAMPLES_DIR against the model; DataError (naming the file) on any disagreement."""
    folder = Path(folder)
    manifest = formats.read_manifest(folder, check="size")
    where = folder / formats.MANIFEST_FILE
    if manifest.vocab_size != vocab_size:
        raise file_error(
            where, f"the samples use a vocab of {manifest.vocab_size} tokens but the model's vocab_size is {vocab_size}"
        )
    if manifest.max_seq_length > max_position_embeddings:
        raise file_error(
            where,
            f"the samples are {manifest.max_seq_length} tokens long but the model has only "
            f"max_position_embeddings={max_position_embeddings}",
        )
    if nsp and not manifest.nsp:
        raise file_error(
            where, "the samples have no next-sentence labels (made without --nsp) but the model type needs them"
        )
    train, test = (
        tuple(
            SampleFileRef(formats.listed_path(folder, f.name, formats.MANIFEST_FILE), f.rows)
            for f in manifest.files_of(s)
            if f.rows > 0
        )
        for s in ("train", "test")
    )
    if not train:
        raise file_error(where, "lists no train samples")
    if need_test and not test:
        raise file_error(where, "lists no test samples, which validation needs")
    for ref in train + test:
        check_sample_file(ref, manifest, nsp)
    return TrainingSamples(folder, manifest, train, test)


def check_sample_file(ref: SampleFileRef, manifest: formats.Manifest, nsp: bool) -> None:
    """The file holds every dataset the manifest promises, with its dtype and shape."""
    import h5py

    shapes = formats.sample_shapes(nsp, manifest.max_seq_length, manifest.max_predictions_per_seq)
    expected = {name: (dtype, (ref.rows, *shape)) for name, (dtype, shape) in shapes.items()}
    try:
        with h5py.File(ref.path, "r") as f:
            for name, (dtype, shape) in expected.items():
                if name not in f:
                    raise file_error(ref.path, f"has no dataset {name!r}")
                ds = f[name]
                if ds.dtype != np.dtype(dtype) or ds.shape != shape:
                    raise file_error(
                        ref.path,
                        f"dataset {name!r} is {ds.dtype}{list(ds.shape)}, "
                        f"expected {dtype}{list(shape)} (from {formats.MANIFEST_FILE})",
                    )
    except OSError as e:
        raise file_error(ref.path, f"not a readable HDF5 file ({e})") from None


# ------------------------------------------------------------------------------------ the order
@dataclass(frozen=True)
class Block:
    """Rows [start, stop) of train file number `file`."""

    file: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class LoaderLayout:
    """Everything the order of the samples depends on."""

    seed: int
    world_size: int
    rank: int
    micro_batch_size: int
    block_rows: int = formats.HDF5_CHUNK_ROWS
    window_blocks: int = 8  # rows are shuffled inside windows of this many blocks

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside [0, {self.world_size})")
        if self.micro_batch_size < 1 or self.block_rows < 1 or self.window_blocks < 1:
            raise ValueError("micro_batch_size, block_rows and window_blocks must be >= 1")


@dataclass(frozen=True)
class EpochPlan:
    blocks: tuple[Block, ...]  # this rank's blocks, in reading order
    micro_batches: int  # full micro-batches every rank runs this epoch


@dataclass(frozen=True)
class DataPosition:
    """Where the training stream stands: `micro_batch` micro-batches of `epoch` have been consumed."""

    epoch: int = 0
    micro_batch: int = 0

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "micro_batch": self.micro_batch}

    @classmethod
    def from_dict(cls, d: dict) -> DataPosition:
        return cls(int(d["epoch"]), int(d["micro_batch"]))


def rescale_position(position: DataPosition, samples_per_pass: int, new_samples_per_pass: int) -> DataPosition:
    """The position after the same number of the epoch's samples, counted in passes of another size
    (micro-batch x world size); used when a run resumes on another number of ranks."""
    return DataPosition(position.epoch, position.micro_batch * samples_per_pass // new_samples_per_pass)


def split_into_blocks(rows_per_file: Sequence[int], block_rows: int) -> list[Block]:
    return [
        Block(i, start, min(start + block_rows, rows))
        for i, rows in enumerate(rows_per_file)
        for start in range(0, rows, block_rows)
    ]


def deal_blocks(blocks: Sequence[Block], world_size: int) -> list[list[Block]]:
    """Give each block, in the given order, to the rank with the fewest rows so far (ties: lowest rank)."""
    import heapq

    hands: list[list[Block]] = [[] for _ in range(world_size)]
    heap = [(0, r) for r in range(world_size)]
    for block in blocks:
        rows, r = heapq.heappop(heap)
        hands[r].append(block)
        heapq.heappush(heap, (rows + block.rows, r))
    return hands


def epoch_plan(rows_per_file: Sequence[int], layout: LoaderLayout, epoch: int) -> EpochPlan:
    blocks = split_into_blocks(rows_per_file, layout.block_rows)
    order = np.random.default_rng([layout.seed, epoch, _BLOCK_ORDER]).permutation(len(blocks))
    hands = deal_blocks([blocks[i] for i in order], layout.world_size)
    common = min(sum(b.rows for b in hand) for hand in hands) // layout.micro_batch_size
    return EpochPlan(tuple(hands[layout.rank]), common)


def micro_batches_per_epoch(rows_per_file: Sequence[int], layout: LoaderLayout, epoch: int = 0) -> int:
    return epoch_plan(rows_per_file, layout, epoch).micro_batches


# ------------------------------------------------------------------------------------ reading
class SampleReader:
    """Reads row ranges of sample files, keeping a few files open (used by one thread only); every token
    id read is checked against the model's vocab size."""

    def __init__(self, files: Sequence[SampleFileRef], names: Sequence[str], vocab_size: int):
        self.files, self.names, self.vocab_size = files, tuple(names), vocab_size
        self._open: OrderedDict[int, object] = OrderedDict()

    def read(self, block: Block) -> dict[str, np.ndarray]:
        f = self._file(block.file)
        where = self.files[block.file].path
        try:
            arrays = {name: f[name][block.start : block.stop] for name in self.names}
        except (OSError, KeyError) as e:
            raise file_error(where, f"cannot read rows {block.start}-{block.stop} ({e})") from None
        check_token_ids(where, block, arrays, self.vocab_size)
        return arrays

    def read_blocks(self, blocks: Sequence[Block]) -> dict[str, np.ndarray]:
        parts = [self.read(b) for b in blocks]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.names}

    def _file(self, index: int):
        import h5py

        if index in self._open:
            self._open.move_to_end(index)
            return self._open[index]
        if len(self._open) >= _OPEN_FILES:
            self._open.popitem(last=False)[1].close()
        try:
            f = h5py.File(self.files[index].path, "r")
        except OSError as e:
            raise file_error(self.files[index].path, f"cannot open ({e})") from None
        self._open[index] = f
        return f

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


def check_token_ids(path: Path, block: Block, arrays: dict[str, np.ndarray], vocab_size: int) -> None:
    """The token ids of the rows lie in [0, vocab_size): an id outside would crash the embedding lookup
    mid-training or, as a label, make the loss undefined. A min and a max per block: cheap."""
    for name in (formats.INPUT_IDS, formats.MASKED_LM_IDS):
        ids = arrays[name]
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            outside = (ids < 0) | (ids >= vocab_size)
            row = int(np.flatnonzero(outside.any(axis=1))[0])
            raise file_error(
                path,
                f"rows {block.start}-{block.stop}: {name} holds token ids outside the model's vocab "
                f"({vocab_size} tokens) (first: {ids[outside][0]} in row {block.start + row}): "
                "not samples of this vocab",
            )


def model_inputs(arrays: dict[str, np.ndarray], pin: bool) -> dict[str, torch.Tensor]:
    """Sample arrays -> the model's keyword arguments (int64 tensors; labels -100 on unused mask slots)."""
    positions = arrays[formats.MASKED_LM_POSITIONS]
    inputs = {
        "input_ids": arrays[formats.INPUT_IDS],
        "token_type_ids": arrays[formats.SEGMENT_IDS],
        "attention_mask": arrays[formats.INPUT_MASK],
        "masked_lm_positions": positions,
        "labels": np.where(positions > 0, arrays[formats.MASKED_LM_IDS], IGNORE_INDEX),
    }
    if formats.NEXT_SENTENCE_LABELS in arrays:
        inputs["next_sentence_label"] = arrays[formats.NEXT_SENTENCE_LABELS]
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for k, v in inputs.items()}
    return {k: t.pin_memory() for k, t in tensors.items()} if pin else tensors


@dataclass
class MicroBatch:
    inputs: dict[str, torch.Tensor]
    position: DataPosition  # the stream position just after this micro-batch


def _take(arrays: dict[str, np.ndarray], start: int, stop: int | None = None) -> dict[str, np.ndarray]:
    return {k: v[start:stop] for k, v in arrays.items()}


def _concat(a: dict[str, np.ndarray] | None, b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return b if a is None else {k: np.concatenate([a[k], b[k]]) for k in b}


def train_batches(
    samples: TrainingSamples, layout: LoaderLayout, start: DataPosition, nsp: bool = False, pin: bool = False
) -> Iterator[MicroBatch]:
    """The endless stream of this rank's micro-batches from `start` on (epoch after epoch)."""
    reader = SampleReader(samples.train, list(formats.sample_datasets(nsp)), samples.manifest.vocab_size)
    epoch, skip = start.epoch, start.micro_batch
    try:
        while True:
            plan = epoch_plan(samples.train_rows, layout, epoch)
            if plan.micro_batches == 0:
                raise DataError(
                    f"{samples.folder}: {sum(samples.train_rows)} train samples are too few for "
                    f"{layout.world_size} rank(s) x micro-batch {layout.micro_batch_size}"
                )
            yield from _epoch_batches(reader, plan, layout, epoch, skip, pin)
            epoch, skip = epoch + 1, 0
    finally:
        reader.close()


def _epoch_batches(
    reader: SampleReader, plan: EpochPlan, layout: LoaderLayout, epoch: int, skip: int, pin: bool
) -> Iterator[MicroBatch]:
    mb, windows = (
        layout.micro_batch_size,
        [plan.blocks[i : i + layout.window_blocks] for i in range(0, len(plan.blocks), layout.window_blocks)],
    )
    first_row, window_start = skip * mb, 0
    index, pending = skip, None
    for w, window in enumerate(windows):
        if index >= plan.micro_batches:
            return
        window_rows = sum(b.rows for b in window)
        if window_start + window_rows <= first_row:  # wholly before the resume point: not read
            window_start += window_rows
            continue
        rows = reader.read_blocks(window)
        order = np.random.default_rng([layout.seed, epoch, _WINDOW_ORDER, layout.world_size, layout.rank, w])
        rows = _take(_permute(rows, order.permutation(window_rows)), max(0, first_row - window_start))
        window_start += window_rows
        pending = _concat(pending, rows)
        while len(pending[formats.INPUT_IDS]) >= mb and index < plan.micro_batches:
            index += 1
            position = DataPosition(epoch, index) if index < plan.micro_batches else DataPosition(epoch + 1, 0)
            yield MicroBatch(model_inputs(_take(pending, 0, mb), pin), position)
            pending = _take(pending, mb)


def _permute(arrays: dict[str, np.ndarray], perm: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[perm] for k, v in arrays.items()}


def validation_batches(
    samples: TrainingSamples, layout: LoaderLayout, max_samples: int, nsp: bool = False, pin: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's share of a fixed, seeded subset of the test samples (the same subset every time).

    Ranks may get different numbers of batches; the caller sums over ranks once, at the end.
    """
    blocks = split_into_blocks([f.rows for f in samples.test], layout.block_rows)
    order = np.random.default_rng([layout.seed, _VALIDATION_ORDER]).permutation(len(blocks))
    chosen, total = [], 0
    for i in order:
        if total >= max_samples:
            break
        b = blocks[i]
        b = Block(b.file, b.start, min(b.stop, b.start + max_samples - total))
        chosen.append(b)
        total += b.rows
    reader = SampleReader(samples.test, list(formats.sample_datasets(nsp)), samples.manifest.vocab_size)
    try:
        for block in deal_blocks(chosen, layout.world_size)[layout.rank]:
            arrays = reader.read(block)
            for start in range(0, block.rows, layout.micro_batch_size):
                yield model_inputs(_take(arrays, start, start + layout.micro_batch_size), pin)
    finally:
        reader.close()


# ------------------------------------------------------------------------------------ prefetching
class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Runs an iterator in a background thread, up to `depth` items ahead of the consumer.

    h5py releases the GIL while it decompresses, so reading overlaps the training step.
    Errors raised by the iterator are raised again in the consumer.
    """

    def __init__(self, make_iterator: Callable[[], Iterator], depth: int = 8, name: str = "sharebert-data"):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make_iterator,), name=name, daemon=True)
        self._thread.start()

    def _run(self, make_iterator: Callable[[], Iterator]) -> None:
        try:
            iterator = make_iterator()
            try:
                for item in iterator:
                    if not self._put(item):
                        return
                self._put(StopIteration())
            finally:
                if hasattr(iterator, "close"):
                    iterator.close()  # a generator's `finally` closes its files now
        except BaseException as e:  # handed to the consumer
            self._put(_Failure(e))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        if isinstance(item, StopIteration):
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
