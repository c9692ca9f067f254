"""Tokenizer files with the training casing, `sharebert export-hf`, and what pretrain / finetune export (docs/model.md)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from finetune_fixtures import write_task
from hf_fixtures import SPECIALS, padded_batch, tiny, transformers, write_vocab
from samples_fixture import pretrain_argv, write_samples

from sharebert.cli import main
from sharebert.tokenization import bert_tokenizer
from sharebert.trainer.model.modeling import (
    ShareBertForMaskedLM,
    ShareBertForSequenceClassification,
    load_model_folder,
    save_model_folder,
)
from sharebert.trainer.model.tokenizer_files import write_tokenizer_files

HF_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "modeling_sharebert.py"}
SHAREBERT_FILES = {"config.json", "model.safetensors", "vocab.txt"}

CASED_WORDS = ["Paris", "paris", "The", "the", "café", "cafe", "Café", "naïve", "naive", "über", "uber", "is", "of"]
CASED_WORDS += ["France", "france", "capital", ".", ",", "!", "?", "'", "-", "s", "##s", "a", "##b", "c", "e", "é"]
SENTENCES = [
    "Paris is the capital of France.",
    "The café is naïve, über-cool!",
    "THE CAFÉ?! cafés' zzzunknown words",
    "Ünïcödé ÀÉÎ and 東京 tabs\tand   spaces",
    "",
]


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_auto_tokenizer_gives_sharebert_ids(tmp_path, lowercase):
    folder = tmp_path / "tok"
    written = write_tokenizer_files(folder, SPECIALS + CASED_WORDS, lowercase, max_length=64)
    assert written == ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]
    assert json.loads((folder / "tokenizer_config.json").read_text())["do_lower_case"] is lowercase
    ours = bert_tokenizer(folder / "vocab.txt", lowercase)
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert theirs.model_max_length == 64 and theirs.mask_token == "[MASK]" and theirs.pad_token_id == 0
    for text in SENTENCES:
        assert theirs(text)["input_ids"] == ours.encode(text).ids, text
    pair = theirs(SENTENCES[0], SENTENCES[1])
    expected = ours.encode(SENTENCES[0], SENTENCES[1])
    assert (pair["input_ids"], pair["token_type_ids"]) == (expected.ids, expected.type_ids)
    cafe = theirs("Café")["input_ids"][1]
    assert theirs.convert_ids_to_tokens(cafe) == ("cafe" if lowercase else "Café")


def test_a_vocab_file_is_copied_byte_for_byte(tmp_path):
    vocab = write_vocab(tmp_path / "vocab.txt")
    write_tokenizer_files(tmp_path / "tok", vocab, True)
    assert (tmp_path / "tok" / "vocab.txt").read_bytes() == vocab.read_bytes()


# ---------------------------------------------------------------- export-hf
def older_folder(folder, model, vocab, *, pytorch_bin=False):
    """A model folder as sharebert wrote it before: no auto_map, no tokenizer files, no remote code."""
    save_model_folder(model, folder, vocab, pytorch_bin=pytorch_bin)
    for name in HF_FILES:
        (folder / name).unlink()
    config = json.loads((folder / "config.json").read_text())
    del config["auto_map"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def outputs(model, batch):
    with torch.no_grad():
        return model.eval()(**batch).logits


@pytest.mark.parametrize("command", [["export-hf"], ["export", "hf"]])
def test_export_hf_round_trip(tmp_path, capsys, command):
    vocab = write_vocab(tmp_path / "vocab.txt")
    source = older_folder(tmp_path / "old", ShareBertForMaskedLM(tiny(), seed=4), vocab)
    assert main([*command, str(source), "-o", str(tmp_path / "hf"), "-q"]) == 0
    out = tmp_path / "hf"
    assert capsys.readouterr().out.strip() == str(out)
    assert {p.name for p in out.iterdir()} == SHAREBERT_FILES | HF_FILES
    assert (out / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is True
    batch = padded_batch()
    expected = outputs(load_model_folder(source), batch)
    assert torch.equal(outputs(load_model_folder(out), batch), expected)
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(str(out), trust_remote_code=True)
    assert (outputs(theirs, batch) - expected).abs().max().item() <= 1e-5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_hf_converts_a_reference_checkpoint(tmp_path):
    """pytorch_model.bin in fp16 with the reference's key spellings and config.json, no auto_map."""
    folder = tmp_path / "reference"
    folder.mkdir()
    source = ShareBertForMaskedLM(tiny(fused_linear_layer=False, sparse_mask_prediction=False), seed=2)
    with torch.no_grad():
        source.cls.predictions.bias.normal_()
    state = {
        k.replace("transform.dense_act.", "transform.dense_act.dense."): v.half()
        for k, v in source.state_dict().items()
    }
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    torch.save(state, folder / "pytorch_model.bin")
    config = {k: v for k, v in source.config.to_dict().items() if k not in ("nsp", "attention_scale_exponent")}
    config.update(layer_norm_eps=1e-12, layer_norm_type="apex", architectures=["ShareBertLMHeadModel"])
    (folder / "config.json").write_text(json.dumps(config))
    write_vocab(folder / "vocab.txt")
    assert main(["export-hf", str(folder), "-o", str(tmp_path / "hf"), "-q"]) == 0
    out = tmp_path / "hf"
    assert {p.name for p in out.iterdir()} == SHAREBERT_FILES | HF_FILES | {"pytorch_model.bin"}
    assert set(torch.load(out / "pytorch_model.bin", weights_only=True)) == set(state)
    batch = padded_batch()
    expected = outputs(load_model_folder(folder), batch)
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(str(out), trust_remote_code=True)
    assert (outputs(theirs, batch) - expected).abs().max().item() <= 1e-5
    assert torch.equal(outputs(load_model_folder(out), batch), expected)


def test_export_hf_keeps_a_classifier_and_its_casing(tmp_path):
    vocab = write_vocab(tmp_path / "vocab.txt")
    model = ShareBertForSequenceClassification(tiny(num_labels=3), seed=5)
    source = older_folder(tmp_path / "clf", model, vocab)
    (source / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))  # as finetune wrote it
    assert main(["export-hf", str(source), "-o", str(tmp_path / "hf"), "-q"]) == 0
    assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())["do_lower_case"] is False
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(tmp_path / "hf"), trust_remote_code=True
    )
    batch = padded_batch()
    assert (outputs(theirs, batch) - outputs(model, batch)).abs().max().item() <= 1e-5
    # An existing model folder is replaced; --lowercase overrides the recorded casing.
    assert main(["export-hf", str(source), "-o", str(tmp_path / "hf"), "--lowercase", "-q"]) == 0
    assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())["do_lower_case"] is True


@pytest.mark.parametrize(
    "case, message",
    [
        ("not a model folder", "config.json"),
        ("output holds other files", "holds notes.txt, not a model folder"),
        ("no vocab", "vocab.txt: missing"),
    ],
)
def test_export_hf_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, case, message):
    vocab = write_vocab(tmp_path / "vocab.txt")
    source = older_folder(tmp_path / "src", ShareBertForMaskedLM(tiny(), seed=0), vocab)
    out = tmp_path / "out"
    if case == "not a model folder":
        source = tmp_path / "empty"
        source.mkdir()
    elif case == "output holds other files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    else:
        (source / "vocab.txt").unlink()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["export-hf", str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sharebert export-hf: error: ") and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if out.exists():
        assert [p.name for p in out.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------- the stages' folders
def test_finetune_starts_from_an_exported_folder_and_exports_one(tmp_path):
    from finetune_fixtures import VOCAB_SIZE
    from finetune_fixtures import write_vocab as write_glue_vocab

    vocab = write_glue_vocab(tmp_path / "vocab.txt")
    model = ShareBertForMaskedLM(tiny(vocab_size=VOCAB_SIZE), seed=0)
    older_folder(tmp_path / "old", model, vocab)
    assert main(["export-hf", str(tmp_path / "old"), "-o", str(tmp_path / "hf"), "--cased", "-q"]) == 0
    rows = [("a good day", None, "1"), ("the film was bad", None, "0")] * 8
    write_task(tmp_path / "glue", "sst2", rows, rows[:4], [(a, b) for a, b, _ in rows[:3]])
    argv = ["finetune", "--model_name_or_path", str(tmp_path / "hf"), "--output_dir", str(tmp_path / "ft")]
    argv += ["--task_name", "sst2", "--data_dir", str(tmp_path / "glue"), "--max_steps", "2", "--cpu_threads", "1"]
    assert main([*argv, "--quiet"]) == 0
    tuned = tmp_path / "ft" / "sst2" / "seed-42" / "model"
    assert {p.name for p in tuned.iterdir()} == SHAREBERT_FILES | HF_FILES
    assert json.loads((tuned / "tokenizer_config.json").read_text())["do_lower_case"] is False  # the model's casing
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(str(tuned), trust_remote_code=True)
    batch = {k: v.clamp(max=VOCAB_SIZE - 1) for k, v in padded_batch().items()}
    ours = load_model_folder(tuned, task="sequence-classification")
    assert (outputs(theirs, batch) - outputs(ours, batch)).abs().max().item() <= 1e-5


@pytest.mark.usefixtures("torch_one_thread")
def test_pretraining_exports_with_the_casing_of_its_samples(tmp_path):
    samples = write_samples(tmp_path / "samples", [64], [])
    manifest = json.loads((samples / "manifest.json").read_text())
    manifest["vocab"]["lowercase"] = False
    (samples / "manifest.json").write_text(json.dumps(manifest))
    flags = "--preset tiny --train_batch_size 8 --train_micro_batch_size_per_gpu 8 --max_steps 1 -q"
    assert main(pretrain_argv(samples, tmp_path / "run", flags)) == 0
    model = tmp_path / "run" / "model"
    assert {p.name for p in model.iterdir()} == SHAREBERT_FILES | HF_FILES
    assert json.loads((model / "tokenizer_config.json").read_text())["do_lower_case"] is False
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model))
    assert tokenizer("W1 w1")["input_ids"] == bert_tokenizer(model / "vocab.txt", False).encode("W1 w1").ids
    shutil.rmtree(tmp_path / "run")
