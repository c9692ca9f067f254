"""GLUE readers (TSV layouts and Hugging Face files), task names and submission files."""

import numpy as np
import pytest
from finetune_fixtures import FOLDERS, SUBMISSION_FILES, write_ax, write_task

from sharebert.errors import ConfigError, DataError
from sharebert.trainer.finetune.glue import (
    ALL_TASKS,
    AX_SPLIT,
    GLUE_TASKS,
    HfSource,
    TsvSource,
    open_source,
    resolve_task_names,
    write_submission,
)

QUOTED = 'He said "it is fine and left'  # an unbalanced quote: GLUE files take quotes literally
LABELS = {
    "cola": ("1", "0"),
    "sst2": ("1", "0"),
    "mrpc": ("1", "0"),
    "qqp": ("0", "1"),
    "stsb": ("4.250", "0.5"),
    "mnli": ("neutral", "contradiction"),
    "qnli": ("not_entailment", "entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("1", "0"),
}
PAIR_TASKS = {"mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}


def _rows(task, n, labelled=True):
    rows = []
    for i in range(n):
        a = QUOTED if i == 0 else f"sentence {i} of {task}"
        b = f"other 'side' {i}" if task in PAIR_TASKS else None
        rows.append((a, b, LABELS[task][i % 2]) if labelled else (a, b))
    return rows


@pytest.fixture
def glue_dir(tmp_path):
    for task in ALL_TASKS:
        write_task(tmp_path, task, _rows(task, 3), _rows(task, 2), _rows(task, 4, labelled=False))
    return tmp_path


@pytest.mark.parametrize("task_name", ALL_TASKS)
def test_every_task_layout_is_read(glue_dir, task_name):
    task, source = GLUE_TASKS[task_name], TsvSource(glue_dir)
    train = source.read(task, "train")
    assert len(train) == 3
    assert train.text_a[0] == QUOTED  # quote kept, row not merged with the next one
    assert train.text_a[1] == f"sentence 1 of {task_name}"
    if task_name in PAIR_TASKS:
        assert train.text_b == ["other 'side' 0", "other 'side' 1", "other 'side' 2"]
    else:
        assert train.text_b is None
    if task.is_regression:
        np.testing.assert_allclose(train.labels, [4.25, 0.5, 4.25])
    else:
        first, second = (task.label_names.index(x) for x in LABELS[task_name])
        assert train.labels.tolist() == [first, second, first]
    for split in task.dev_splits:
        assert len(source.read(task, split)) == 2
    test = source.read(task, task.test_splits[0].split)
    assert len(test) == 4 and test.labels is None
    assert test.index == ["0", "1", "2", "3"]


def test_cola_exact_glue_lines(tmp_path):
    folder = tmp_path / "CoLA"
    folder.mkdir()
    (folder / "train.tsv").write_text(
        "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
        "gj04\t0\t*\tThey drank the pub.\n"
        'cj99\t1\t\tThe "more you eat, the more you want.\n',
        encoding="utf-8",
    )
    (folder / "test.tsv").write_text("index\tsentence\n0\tBill whistled past the house.\n", encoding="utf-8")
    source = TsvSource(tmp_path)
    train = source.read(GLUE_TASKS["cola"], "train")
    assert train.text_a[1] == "They drank the pub."
    assert train.text_a[2] == 'The "more you eat, the more you want.'
    assert train.labels.tolist() == [1, 0, 1]
    assert source.read(GLUE_TASKS["cola"], "test").text_a == ["Bill whistled past the house."]


def test_mnli_has_two_dev_sets_and_the_diagnostic_set(tmp_path):
    matched = [("a cat sat", "an animal sat", "entailment"), ("x", "y", "neutral")]
    mismatched = [("p", "q", "contradiction")] * 3
    write_task(tmp_path, "mnli", matched, matched, [("t", "u")], dev_mismatched=mismatched)
    write_ax(tmp_path, [("The cat sat.", "A cat sat."), ("No one came.", "Someone came.")])
    source, mnli = TsvSource(tmp_path), GLUE_TASKS["mnli"]
    m = source.read(mnli, "validation_matched")
    mm = source.read(mnli, "validation_mismatched")
    assert m.labels.tolist() == [0, 1] and mm.labels.tolist() == [2, 2, 2]
    assert m.origin.endswith("dev_matched.tsv") and mm.origin.endswith("dev_mismatched.tsv")
    assert source.has(mnli, AX_SPLIT)
    ax = source.read(mnli, AX_SPLIT)
    assert ax.text_b == ["A cat sat.", "Someone came."] and ax.labels is None


def test_mrpc_with_byte_order_mark(tmp_path):
    write_task(tmp_path, "mrpc", _rows("mrpc", 2), _rows("mrpc", 2), _rows("mrpc", 2, labelled=False))
    path = tmp_path / "MRPC" / "train.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert TsvSource(tmp_path).read(GLUE_TASKS["mrpc"], "train").labels.tolist() == [1, 0]


def test_folder_spellings_are_accepted(tmp_path):
    write_task(tmp_path, "sst2", _rows("sst2", 2), _rows("sst2", 2), _rows("sst2", 2, labelled=False))
    (tmp_path / "SST-2").rename(tmp_path / "sst2")
    assert len(TsvSource(tmp_path).read(GLUE_TASKS["sst2"], "validation")) == 2


def test_errors_name_the_file(glue_dir):
    source = TsvSource(glue_dir)
    (glue_dir / "RTE" / "dev.tsv").unlink()
    with pytest.raises(DataError, match=r"RTE/dev.tsv: missing"):
        source.read(GLUE_TASKS["rte"], "validation")

    (glue_dir / "QNLI" / "dev.tsv").write_text("index\tquestion\tsentence\tlabel\n0\tq?\ts.\tmaybe\n")
    with pytest.raises(DataError, match=r"QNLI/dev.tsv: line 2: label 'maybe' is not one of entailment/not_entailment"):
        source.read(GLUE_TASKS["qnli"], "validation")

    (glue_dir / "SST-2" / "dev.tsv").write_text("text\tlabel\nfine .\t1\n")
    with pytest.raises(DataError, match=r"SST-2/dev.tsv: missing column 'sentence'"):
        source.read(GLUE_TASKS["sst2"], "validation")

    (glue_dir / "WNLI" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tonly one column\t1\n")
    with pytest.raises(DataError, match=r"WNLI/dev.tsv: line 2: 3 tab-separated columns, expected 4"):
        source.read(GLUE_TASKS["wnli"], "validation")

    with pytest.raises(DataError, match="not found"):
        TsvSource(glue_dir / "nowhere")


def test_malformed_train_rows_are_skipped_and_counted(glue_dir, caplog):
    path = glue_dir / "QQP" / "train.tsv"
    path.write_text(path.read_text() + "99\t198\t199\ta question without its pair\n")
    train = TsvSource(glue_dir).read(GLUE_TASKS["qqp"], "train")
    assert len(train) == 3
    assert "skipped 1 malformed rows (first at line 5)" in caplog.text


def test_task_name_spellings():
    assert resolve_task_names("SST-2") == ["sst2"]
    assert resolve_task_names(["STS-B", "CoLA", "mnli"]) == ["stsb", "cola", "mnli"]
    assert resolve_task_names("rte,MRPC") == ["rte", "mrpc"]
    assert resolve_task_names("all") == list(ALL_TASKS)
    assert len(ALL_TASKS) == 9
    with pytest.raises(ConfigError, match="unknown GLUE task 'squad'"):
        resolve_task_names("squad")


def test_submission_files(glue_dir, tmp_path):
    source = TsvSource(glue_dir)
    write_ax(glue_dir, [("a", "b")] * 5)
    out = tmp_path / "submission"
    written = {}
    for name in ALL_TASKS:
        task = GLUE_TASKS[name]
        for test in task.test_splits:
            split = source.read(task, test.split)
            if task.is_regression:
                predictions = np.linspace(-1.0, 6.0, len(split))
            else:
                predictions = np.arange(len(split)) % task.num_labels
            written[test.submission_file] = write_submission(out / test.submission_file, task, split, predictions)
    assert set(written) == SUBMISSION_FILES == {p.name for p in out.iterdir()}

    def rows(name):
        lines = (out / name).read_text().splitlines()
        assert lines[0] == "index\tprediction"
        return [line.split("\t") for line in lines[1:]]

    assert [r[1] for r in rows("RTE.tsv")] == ["entailment", "not_entailment", "entailment", "not_entailment"]
    assert [r[1] for r in rows("MNLI-m.tsv")] == ["entailment", "neutral", "contradiction", "entailment"]
    assert [r[1] for r in rows("AX.tsv")] == ["entailment", "neutral", "contradiction", "entailment", "neutral"]
    assert [r[1] for r in rows("CoLA.tsv")] == ["0", "1", "0", "1"]
    assert [r[0] for r in rows("QQP.tsv")] == ["0", "1", "2", "3"]
    scores = [float(r[1]) for r in rows("STS-B.tsv")]
    assert scores[0] == 0.0 and scores[-1] == 5.0 and 0 < scores[1] < 5  # clipped to [0, 5]


def _hub_layout(tmp_path):
    """Parquet files named as in the hub's nyu-mll/glue repository."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "glue"
    (root / "rte").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {"sentence1": ["a b", "c d", "e"], "sentence2": ["x", "y", "z"], "label": [0, 1, 1], "idx": [0, 1, 2]}
        ),
        root / "rte" / "train-00000-of-00001.parquet",
    )
    pq.write_table(
        pa.table({"sentence1": ["t"], "sentence2": ["u"], "label": [-1], "idx": [7]}),
        root / "rte" / "test-00000-of-00001.parquet",
    )
    return root


def test_hf_parquet_folder(tmp_path):
    source = open_source(dataset_name=str(_hub_layout(tmp_path)))
    rte = GLUE_TASKS["rte"]
    train = source.read(rte, "train")
    assert train.text_a == ["a b", "c d", "e"] and train.labels.tolist() == [0, 1, 1]
    test = source.read(rte, "test")
    assert test.labels is None and test.index == ["7"]
    assert not source.has(rte, "validation")
    with pytest.raises(DataError, match="no Parquet or Arrow files for split 'validation' of rte"):
        source.read(rte, "validation")


def test_hf_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.Value("float32"),
            "idx": datasets.Value("int32"),
        }
    )
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1.5, 3.0], "idx": [0, 1]},
                features=features,
            ),
            "validation": datasets.Dataset.from_dict(
                {"sentence1": ["e"], "sentence2": ["f"], "label": [2.0], "idx": [0]}, features=features
            ),
        }
    )
    dd.save_to_disk(str(tmp_path / "glue" / "stsb"))
    source = HfSource(str(tmp_path / "glue"))
    stsb = GLUE_TASKS["stsb"]
    np.testing.assert_allclose(source.read(stsb, "train").labels, [1.5, 3.0])
    assert source.has(stsb, "validation") and not source.has(stsb, "test")
    with pytest.raises(DataError, match="missing split 'test'"):
        source.read(stsb, "test")


def test_hf_bad_labels_and_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "glue" / "mnli"
    root.mkdir(parents=True)
    pq.write_table(
        pa.table({"premise": ["a"], "hypothesis": ["b"], "label": [3]}), root / "train-00000-of-00001.parquet"
    )
    pq.write_table(pa.table({"premise": ["a"], "label": [0]}), root / "validation_matched-00000-of-00001.parquet")
    source = HfSource(str(tmp_path / "glue"))
    with pytest.raises(DataError, match="label 3 is not a class id 0..2"):
        source.read(GLUE_TASKS["mnli"], "train")
    with pytest.raises(DataError, match="missing column 'hypothesis'"):
        source.read(GLUE_TASKS["mnli"], "validation_matched")


def test_one_source_only(tmp_path):
    with pytest.raises(ConfigError):
        open_source(tmp_path, "nyu-mll/glue")
    with pytest.raises(ConfigError):
        open_source(None, None)


def test_task_table_matches_glue():
    assert {t.folder for t in GLUE_TASKS.values()} == set(FOLDERS.values())
    assert GLUE_TASKS["stsb"].num_labels == 1 and GLUE_TASKS["mnli"].num_labels == 3
    assert GLUE_TASKS["cola"].metrics == ("mcc",)
