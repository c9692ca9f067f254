"""--engine ray (pipeline/ray_engine.py) on a Ray cluster started in this process: the same bytes as
--engine local for prepare and mask, task errors as one line naming the task, the shared-folder check,
and Ray imported only on this path. tests/test_ray_cluster.py runs a cluster of `ray start` nodes."""

from __future__ import annotations

import bz2
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ray_support import OBJECT_STORE_BYTES, folder_bytes, processes_of, stop_processes
from test_data_stages_imports import loaded_modules
from wikidump import wikimedia_multistream

from sharebert.cli import main
from sharebert.errors import ConfigError, DataError
from sharebert.pipeline.prepare.sources import wiki
from sharebert.pipeline.ray_engine import RayPool

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def in_process_cluster():
    """ray.init(num_cpus=2) in this process, shut down (and its processes checked gone) at the end."""
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    saved = dict(os.environ)
    os.environ["RAY_AUTH_MODE"] = "disabled"  # no token written to ~/.ray for a throwaway cluster
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])  # the workers import this module
    try:
        ray.init(num_cpus=2, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False, _temp_dir=temp,
                 logging_level="WARNING")  # fmt: skip
        yield
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        assert stop_processes(processes_of(temp)) == set()
        shutil.rmtree(temp, ignore_errors=True)


def run_both_engines(tmp_path: Path, name: str, prepare_args: list[str], mask_args: list[str]) -> None:
    """prepare then mask, on each engine with 2 workers: every file byte-identical."""
    outputs = {}
    for engine in ("local", "ray"):
        prepared, samples = tmp_path / f"{name}-{engine}" / "prepared", tmp_path / f"{name}-{engine}" / "samples"
        engine_args = ["--workers", "2", "--engine", engine, "-q"]
        assert main(["prepare", *prepare_args, "-o", str(prepared), *engine_args]) == 0
        assert main(["mask", str(prepared), "-o", str(samples), *mask_args, *engine_args]) == 0
        outputs[engine] = folder_bytes(prepared), folder_bytes(samples)
    assert outputs["ray"][0] == outputs["local"][0]
    assert outputs["ray"][1] == outputs["local"][1]
    assert any(path.endswith(".parquet") for path in outputs["ray"][0])
    assert any(path.endswith(".hdf5") for path in outputs["ray"][1])


def test_builtin_corpus_same_bytes_on_both_engines(in_process_cluster, tmp_path):
    prepare = ["--builtin", "--train-vocab", "2000", "--num-train-shards", "4"]
    run_both_engines(tmp_path, "builtin", prepare, ["--dup-factor", "2"])


def test_wiki_dump_same_bytes_on_both_engines(in_process_cluster, wiki_dump, wiki_vocab, tmp_path, monkeypatch):
    run_both_engines(tmp_path, "single", ["--wiki", str(wiki_dump.path), "--vocab", str(wiki_vocab)], [])
    # A multistream dump: the workers read its parts themselves.
    monkeypatch.setattr(wiki, "PART_BYTES", 4000)
    multistream = tmp_path / "multi" / wiki_dump.path.name
    multistream.parent.mkdir()
    multistream.write_bytes(wikimedia_multistream(bz2.decompress(wiki_dump.path.read_bytes()), 8))
    run_both_engines(tmp_path, "multi", ["--wiki", str(multistream), "--vocab", str(wiki_vocab)], ["--nsp"])


def test_books_text_and_datasets_same_bytes_on_both_engines(in_process_cluster, wiki_vocab, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    datasets = pytest.importorskip("datasets")
    from pydoc_data.topics import topics

    import pyarrow as pa
    import pyarrow.parquet as pq

    from sharebert.pipeline.prepare.sources import books, hf, text

    monkeypatch.setattr(books, "PART_BYTES", 20_000)  # several parts of each, read by the workers
    monkeypatch.setattr(text, "PART_BYTES", 5_000)
    monkeypatch.setattr(hf, "PART_ROWS", 10)
    folder = tmp_path / "books"
    folder.mkdir()
    texts = sorted(topics.values())
    for n in range(24):
        (folder / f"book-{n:02d}.txt").write_text("\n\n".join(texts[n::24]), encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(texts[:40]), encoding="utf-8")
    datasets.Dataset.from_dict({"text": texts[40:80]}).save_to_disk(str(tmp_path / "saved"))
    pq.write_table(pa.table({"text": texts[:40]}), tmp_path / "rows.parquet", row_group_size=8)
    prepare = ["--books", str(folder), "--text", str(corpus), "--hf-dataset", str(tmp_path / "saved"),
               "--hf-dataset", str(tmp_path / "rows.parquet"), "--vocab", str(wiki_vocab),
               "--num-train-shards", "3"]  # fmt: skip
    run_both_engines(tmp_path, "books", prepare, ["--dup-factor", "2"])


def fails_on_three(n: int) -> int:
    if n == 3:
        raise ValueError("three is not allowed\nsecond line")
    if n == 5:
        raise DataError("input-5.txt: unreadable")
    return n * n


def test_results_in_task_order_and_errors_name_the_task(in_process_cluster):
    with RayPool(2) as pool:
        assert pool.workers == 2
        assert list(pool.map_ordered(fails_on_three, [9, 2, 7, 1, 0, 4], cost=lambda n: n)) == [81, 4, 49, 1, 0, 16]
        with pytest.raises(DataError, match=r"^part 3: the task failed: ValueError: three is not allowed$"):
            list(pool.map_ordered(fails_on_three, range(6), describe=lambda n: f"part {n}"))
        with pytest.raises(DataError, match=r"^input-5\.txt: unreadable$"):  # the project's errors pass as they are
            list(pool.map_ordered(fails_on_three, [5]))


def timed_nap(n: int) -> tuple[float, float]:
    import time

    started = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    time.sleep(0.2)
    return started, time.monotonic()


def test_workers_bounds_the_tasks_running_at_once(in_process_cluster):
    with RayPool(1) as pool:  # on a cluster of 2 CPUs
        spans = sorted(pool.map_ordered(timed_nap, range(4)))
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))  # one at a time


def dies(n: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)  # the worker process, every time the task runs
    return n


def test_a_task_whose_worker_keeps_dying_stops_the_run_naming_it(in_process_cluster):
    with RayPool(2) as pool, pytest.raises(DataError, match=r"^shard 7: the Ray worker running it was lost 4 times"):
        list(pool.map_ordered(dies, [7], describe=lambda n: f"shard {n}"))


def test_a_path_a_node_cannot_see_stops_the_run(in_process_cluster, tmp_path):
    with RayPool(None) as pool:
        pool.check_shared(readable=[tmp_path], writable=[tmp_path])
        with pytest.raises(ConfigError, match=r"^node \S+ \(.+\): cannot see /nowhere/input; inputs and outputs must"):
            pool.check_shared(readable=[tmp_path, Path("/nowhere/input")], writable=[tmp_path])
    assert list(tmp_path.iterdir()) == []  # the marker files are gone


def test_local_engine_does_not_import_ray(wiki_dump, tmp_path):
    prepared, samples = str(tmp_path / "prepared"), str(tmp_path / "samples")
    stages = [
        ["prepare", "--wiki", str(wiki_dump.path), "--train-vocab", "500", "-o", prepared, "--workers", "2", "-q"],
        ["mask", prepared, "-o", samples, "--dup-factor", "1", "--workers", "2", "-q"],
    ]
    assert loaded_modules(stages, ["ray", "pyarrow"]) == ["pyarrow"]


def test_without_ray_the_engine_says_how_to_install_it(tmp_path):
    child = "import sys; sys.modules['ray'] = None; from sharebert.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", child, "prepare", "-o", str(tmp_path / "out"), "--engine", "ray"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("--engine ray needs Ray: pip install 'sharebert[ray]'")
    assert not (tmp_path / "out").exists()
