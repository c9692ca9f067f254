"""The demo's acceptability task, built from a prepared corpus written here in `sharebert prepare`'s format."""

import json
from collections import Counter

import numpy as np
import pytest
from finetune_fixtures import GOOD, NEUTRAL, VOCAB_SIZE, WORDS, write_vocab

from sharebert.errors import DataError
from sharebert.fileio import sha256_file
from sharebert.pipeline import formats
from sharebert.trainer.finetune import demo_task
from sharebert.trainer.finetune.demo_task import DemoTaskConfig, build_demo_task, decode_word_pieces
from sharebert.trainer.finetune.glue import GLUE_TASKS, TsvSource


def _template_sentence(rng, doc: int) -> list[str]:
    """Sentences with a fixed word order (so that shuffling is detectable) that name their document."""
    n = int(rng.integers(1, 4))
    words = ["the", str(rng.choice(["film", "day", "house", "road", "tree", "book"])), f"doc{doc}", "was", "very"]
    words += [str(w) for w in rng.choice(GOOD, n)] + ["and", "it", "is", str(rng.choice(GOOD)), "."]
    return words


def write_prepared(folder, docs_per_shard=(30, 30, 10), keep_text=False, seed=0):
    """PREPARED_DIR as CONTRACTS.md describes it: Parquet shards, vocab.txt, prepare.json (written last)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    vocab_path = write_vocab(folder / formats.VOCAB_FILE)
    index = {w: i for i, w in enumerate(vocab_path.read_text().split("\n"))}
    rng = np.random.default_rng(seed)
    splits = ["train"] * (len(docs_per_shard) - 1) + ["test"]
    counts = Counter(splits)
    shards, doc_no = [], 0
    for k, (split, n_docs) in enumerate(zip(splits, docs_per_shard)):
        shard_index = k if split == "train" else 0
        rows = {"id": [], "source": [], "sentences": [], "text": []}
        for _ in range(n_docs):
            sentences = [_template_sentence(rng, doc_no) for _ in range(int(rng.integers(3, 8)))]
            sentences.append(["it", "was", "."])  # too short for the task: never used
            rows["id"].append(f"doc-{doc_no}")
            rows["source"].append("text:corpus.txt")
            rows["sentences"].append([[index[w] for w in s] for s in sentences])
            rows["text"].append([" ".join(s).capitalize() for s in sentences])
            doc_no += 1
        if not keep_text:
            del rows["text"]
        name = formats.shard_file_name(split, shard_index, counts[split])
        pq.write_table(pa.table(rows, schema=formats.parquet_schema(keep_text)), folder / name)
        shards.append(
            {
                "file": name,
                "split": split,
                "index": shard_index,
                "documents": n_docs,
                "sentences": sum(len(s) for s in rows["sentences"]),
                "tokens": 0,
                "bytes": (folder / name).stat().st_size,
                "sha256": sha256_file(folder / name),
            }
        )
    info = {
        "format_version": formats.PREPARE_FORMAT_VERSION,
        "sharebert_version": "test",
        "vocab": {
            "file": formats.VOCAB_FILE,
            "sha256": sha256_file(vocab_path),
            "size": VOCAB_SIZE,
            "lowercase": True,
            "trained": False,
        },
        "shards": shards,
        "totals": {},
        "settings": {"seed": 42},
        "inputs": [],
        "versions": {},
    }
    (folder / formats.PREPARE_INFO_FILE).write_text(json.dumps(info))
    return folder


def _cola_rows(path):
    return [line.split("\t") for line in path.read_text().splitlines()]


def _corpus_sentences(folder, keep_text=False):
    import pyarrow.parquet as pq

    vocab = (folder / formats.VOCAB_FILE).read_text().split("\n")
    by_doc = {}
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path).to_pydict()
        column = (
            table["text"] if keep_text else [[decode_word_pieces(s, vocab) for s in doc] for doc in table["sentences"]]
        )
        for doc_id, sentences in zip(table["id"], column):
            by_doc[doc_id] = sentences
    return by_doc


@pytest.fixture
def prepared(tmp_path):
    return write_prepared(tmp_path / "prepared")


def _doc_of(sentence: str) -> str:
    return next(w for w in sentence.split() if w.startswith("doc")).replace("doc", "doc-")


def test_cola_layout_and_honest_labels(prepared, tmp_path):
    """Shuffled negatives keep every word, so each row names its document: splits never share one."""
    out = tmp_path / "task"
    summary = build_demo_task(DemoTaskConfig(prepared, out, seed=1, corruption="shuffle"))
    corpus = _corpus_sentences(prepared)
    docs_in = {}
    for part in ("train", "dev"):
        rows = _cola_rows(out / "CoLA" / f"{part}.tsv")
        assert rows and all(len(r) == 4 for r in rows)  # CoLA: no header, 4 columns
        assert {r[1] for r in rows} == {"0", "1"}
        for source, label, mark, sentence in rows:
            assert source == "demo" and mark == ("*" if label == "0" else "")
            doc = corpus[_doc_of(sentence)]
            if label == "1":
                assert sentence in doc  # a real corpus sentence, unchanged
            else:
                assert sentence not in doc  # a new word order ...
                assert any(sorted(s.split()) == sorted(sentence.split()) for s in doc)  # ... of a real sentence
            assert 6 <= len(sentence.split()) <= 40
        docs_in[part] = {_doc_of(r[3]) for r in rows}
    test_lines = (out / "CoLA" / "test.tsv").read_text().splitlines()
    assert test_lines[0] == "index\tsentence" and len(test_lines) == 1 + summary["examples"]["test"]
    assert [line.split("\t")[0] for line in test_lines[1:]] == [str(i) for i in range(len(test_lines) - 1)]
    docs_in["test"] = {_doc_of(line.split("\t")[1]) for line in test_lines[1:]}
    # Documents, not sentences, are split: no document feeds two splits.
    assert not (docs_in["train"] & docs_in["dev"]) and not (docs_in["train"] & docs_in["test"])
    assert not (docs_in["dev"] & docs_in["test"])
    # The folder is a GLUE data folder the fine-tuning stage reads as CoLA.
    source = TsvSource(out)
    for split, part in (("train", "train"), ("validation", "dev"), ("test", "test")):
        assert len(source.read(GLUE_TASKS["cola"], split)) == summary["examples"][part]
    info = json.loads((out / "demo_task.json").read_text())
    assert info["examples"] == summary["examples"] and 0 < info["positives"]["train"] < info["examples"]["train"]


def test_replaced_words(prepared, tmp_path):
    build_demo_task(DemoTaskConfig(prepared, tmp_path / "t", seed=1))  # the default corruption
    corpus = [s.split() for sentences in _corpus_sentences(prepared).values() for s in sentences]
    vocab = set((prepared / formats.VOCAB_FILE).read_text().split("\n"))
    rows = _cola_rows(tmp_path / "t" / "CoLA" / "train.tsv")
    negatives = [r[3].split() for r in rows if r[1] == "0"]
    assert negatives and len(negatives) < len(rows)
    for words in negatives:
        k = max(1, round(0.3 * len(words)))
        # Some corpus sentence of the same length differs from it in exactly k positions, by vocabulary words.
        sources = [s for s in corpus if len(s) == len(words) and sum(a != b for a, b in zip(s, words)) == k]
        assert sources, words
        assert all(w in vocab and not w.startswith(("[", "##")) for w, s in zip(words, sources[0]) if w != s)
    positives = {r[3] for r in rows if r[1] == "1"}
    assert positives <= {" ".join(s) for s in corpus}


def test_deterministic_from_the_seed(prepared, tmp_path):
    def build(name, seed):
        build_demo_task(DemoTaskConfig(prepared, tmp_path / name, seed=seed))
        return [(tmp_path / name / "CoLA" / f).read_bytes() for f in ("train.tsv", "dev.tsv", "test.tsv")]

    assert build("a", 3) == build("b", 3)
    assert build("a", 3) != build("c", 4)


def test_sizes_are_caps(prepared, tmp_path):
    summary = build_demo_task(
        DemoTaskConfig(prepared, tmp_path / "t", seed=1, sizes={"train": 20, "dev": 5, "test": 7})
    )
    assert summary["examples"] == {"train": 20, "dev": 5, "test": 7}
    assert len(_cola_rows(tmp_path / "t" / "CoLA" / "train.tsv")) == 20


def test_text_column_is_used_when_present(tmp_path):
    prepared = write_prepared(tmp_path / "prepared", keep_text=True)
    build_demo_task(DemoTaskConfig(prepared, tmp_path / "t", seed=1))
    sentences = [r[3] for r in _cola_rows(tmp_path / "t" / "CoLA" / "train.tsv") if r[1] == "1"]
    assert sentences and all(s.startswith("The ") for s in sentences)  # the original text, with its case


def test_errors(tmp_path, prepared):
    with pytest.raises(DataError, match="prepare.json: missing"):
        build_demo_task(DemoTaskConfig(tmp_path, tmp_path / "t"))
    tiny = write_prepared(tmp_path / "tiny", docs_per_shard=(1, 1))
    with pytest.raises(DataError, match="corpus too small"):
        build_demo_task(DemoTaskConfig(tiny, tmp_path / "t2"))


def test_command_line(prepared, tmp_path, capsys):
    assert demo_task.main([str(prepared), str(tmp_path / "t"), "--seed", "2", "--train_size", "50"]) == 0
    assert "CoLA" in capsys.readouterr().out
    assert len(_cola_rows(tmp_path / "t" / "CoLA" / "train.tsv")) == 50
    assert demo_task.main([str(tmp_path / "nothing"), str(tmp_path / "t")]) == 2


@pytest.mark.parametrize("corruption", ["replace", "shuffle"])
@pytest.mark.usefixtures("torch_one_thread")
def test_a_tiny_model_learns_the_demo_task(tmp_path, corruption):
    """A tiny model learns either corruption within seconds on the CPU (shuffled: only word order differs).

    From the model's initialization (docs/model.md: N(0, 0.02) factors, so the carved matrices start near zero) an
    untrained model needs many steps to leave its constant prediction; a larger initializer_range
    stands in for the pretraining the demo model has had.
    """
    from sharebert.trainer.finetune.stage import FinetuneConfig, finetune
    from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM, save_model_folder

    prepared = write_prepared(tmp_path / "prepared", docs_per_shard=(40, 40, 20))
    summary = build_demo_task(
        DemoTaskConfig(prepared, tmp_path / "task", seed=1, dev_fraction=0.2, corruption=corruption)
    )
    assert summary["examples"]["dev"] >= 50
    config = ShareBertConfig.from_preset("tiny", vocab_size=VOCAB_SIZE, initializer_range=0.3)
    save_model_folder(ShareBertForMaskedLM(config, seed=0), tmp_path / "model", prepared / formats.VOCAB_FILE)
    report = finetune(
        FinetuneConfig(
            tmp_path / "model",
            tmp_path / "out",
            ["cola"],
            data_dir=tmp_path / "task",
            learning_rate=3e-3,
            per_device_train_batch_size=32,
            num_train_epochs=10,
            warmup_steps=10,
            eval_steps=20,
            seeds=[1],
            do_predict=False,
        )
    )
    run = report["tasks"]["cola"]["runs"][0]
    assert run["metrics"]["validation"]["mcc"] > 0.5, run["history"]  # chance: 0


def test_decode_word_pieces():
    vocab = ["[PAD]", "un", "##believ", "##able", "story", "."]
    assert decode_word_pieces([1, 2, 3, 4, 5], vocab) == "unbelievable story ."
    assert set(WORDS) >= set(NEUTRAL)
