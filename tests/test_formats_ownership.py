"""Every data-format literal is written out in its owner module only (docs/architecture.md, Boundaries).

Each module under sharebert/ is parsed with `ast` and its string constants are compared with OWNED, which
maps a literal to how it is matched and to the modules allowed to write it. Docstrings are not checked
(they describe, they do not name files). How a literal is matched depends on its kind:

- NAME (file names): a string constant equal to it. A message that mentions the file among other words
  is not a use of the name.
- SUFFIX (file suffixes): a string constant, or a piece of an f-string, equal to it or ending with it
  (`".hdf5"`, `"*.hdf5"`, `f"{name}.hdf5"`), unless it is the dotted name of a module (`"pyarrow.parquet"`).
- COLUMN (Parquet column names): these are common words, also JSON keys (`"sentences"` in prepare.json),
  input kinds (`--text`) and XML tags (`id`), so a constant counts only where it names a column of an
  Arrow table: an argument of `.column()`, `.field()`, `.select()`, `.drop_columns()` or `read_spill()`;
  the value of a `columns=` or `use_dictionary=` argument; the left side of `in x.names` /
  `in x.column_names`; a key of the dict given to `table()` / `from_pydict()`; the index of a row
  obtained from `to_pydict()` / `to_pylist()`. A local variable is followed back to what is assigned to it
  in the same function (`columns = [...]`, `columns["x"] = ...`).
- DATASET (HDF5 dataset names): a string constant equal to it, except as a dict key in sharebert/trainer/:
  the model's keyword arguments share some of these names (`input_ids`, `masked_lm_positions`) and are the
  trainer's own. Reading a sample array by name goes through the constants of formats.py everywhere.

To guard another literal, add a line to OWNED; the tests at the end show that each kind of match finds
what it should.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sharebert"

NAME, SUFFIX, COLUMN, DATASET = "name", "suffix", "column", "dataset"

FORMATS = "sharebert/pipeline/formats.py"
MODEL_IO = "sharebert/trainer/model/io.py"
TOKENIZER_FILES = "sharebert/trainer/model/tokenizer_files.py"  # Hugging Face's tokenizer files of a model folder
GLUE = "sharebert/trainer/finetune/glue.py"  # reads GLUE data in the Hugging Face hub's own file layout
HF_SOURCE = "sharebert/pipeline/prepare/sources/hf.py"  # reads Hugging Face datasets (prepare's --hf-dataset input)
METRICS = "sharebert/trainer/metrics.py"
DEPLOY = "sharebert/deploy/files.py"  # an ONNX export folder (torch-free, so not importing MODEL_IO) and its inputs

# literal -> (kind, modules allowed to write it)
OWNED: dict[str, tuple[str, tuple[str, ...]]] = {
    "prepare.json": (NAME, (FORMATS,)),
    "manifest.json": (NAME, (FORMATS,)),
    "vocab.txt": (NAME, (FORMATS, MODEL_IO)),  # data folders; model folders
    "placement.npz": (NAME, (FORMATS,)),
    ".parquet": (SUFFIX, (FORMATS, GLUE, HF_SOURCE)),
    ".arrow": (SUFFIX, (FORMATS, GLUE, HF_SOURCE)),
    ".hdf5": (SUFFIX, (FORMATS,)),
    "id": (COLUMN, (FORMATS,)),
    "source": (COLUMN, (FORMATS,)),
    "sentences": (COLUMN, (FORMATS,)),
    "text": (COLUMN, (FORMATS,)),
    "input_ids": (DATASET, (FORMATS, DEPLOY)),
    "input_mask": (DATASET, (FORMATS,)),
    "segment_ids": (DATASET, (FORMATS,)),
    "masked_lm_positions": (DATASET, (FORMATS,)),
    "masked_lm_ids": (DATASET, (FORMATS,)),
    "next_sentence_labels": (DATASET, (FORMATS,)),
    ".prepare-work": (NAME, (FORMATS,)),
    ".mask-state": (NAME, (FORMATS,)),
    "run.json": (NAME, (FORMATS,)),
    "settings.json": (NAME, (FORMATS,)),
    "metrics.jsonl": (NAME, (METRICS,)),
    "config.json": (NAME, (MODEL_IO,)),
    "model.safetensors": (NAME, (MODEL_IO,)),
    "pytorch_model.bin": (NAME, (MODEL_IO,)),
    "tokenizer_config.json": (NAME, (TOKENIZER_FILES,)),
    "tokenizer.json": (NAME, (TOKENIZER_FILES,)),
    "special_tokens_map.json": (NAME, (TOKENIZER_FILES,)),
    "modeling_sharebert.py": (NAME, (MODEL_IO,)),
}
# Names of the constants that hold a literal of OWNED: defined (assigned) only in their owner.
OWNED_CONSTANTS = {
    "MODEL_DIR": MODEL_IO,
    "METRICS_FILE": METRICS,
    "VOCAB_FILE": FORMATS,
    "REMOTE_CODE_FILE": MODEL_IO,
    "TOKENIZER_JSON_FILE": TOKENIZER_FILES,
    "TOKENIZER_CONFIG_FILE": TOKENIZER_FILES,
    "SPECIAL_TOKENS_MAP_FILE": TOKENIZER_FILES,
}

COLUMN_ACCESSORS = {"column", "field", "select", "drop_columns", "read_spill"}
COLUMN_KEYWORDS = {"columns", "use_dictionary"}
TABLE_BUILDERS = {"table", "from_pydict"}
ROW_READERS = {"to_pydict", "to_pylist"}
COLUMN_LISTS = {"names", "column_names"}
SCOPES = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


# ---------------------------------------------------------------- the scan
def find_misplaced(root: Path = PACKAGE) -> list[str]:
    """'file:line: literal (owned by ...)' for every owned literal written outside its owners."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = path.relative_to(root.parent).as_posix()
        found += check_source(path.read_text(encoding="utf-8"), module)
    return found


def check_source(source: str, module: str) -> list[str]:
    nodes = list(ast.walk(ast.parse(source)))
    columns = column_constants(nodes)
    found = []
    for node in string_constants(nodes):
        for literal, (kind, owners) in OWNED.items():
            if module not in owners and _matches(kind, literal, node, module, columns):
                found.append((node.lineno, f"{module}:{node.lineno}: {node.value!r} (owned by {', '.join(owners)})"))
    return [message for _, message in sorted(found)]


def _matches(kind: str, literal: str, node: ast.Constant, module: str, columns: set[int]) -> bool:
    if kind == NAME:
        return node.value == literal
    if kind == SUFFIX:
        return node.value.endswith(literal) and not _is_module_name(node.value)
    if kind == COLUMN:
        return node.value == literal and id(node) in columns
    if kind == DATASET:
        model_keyword = module.startswith("sharebert/trainer/") and getattr(node, "is_dict_key", False)
        return node.value == literal and not model_keyword
    raise ValueError(f"unknown kind {kind!r}")


def _is_module_name(value: str) -> bool:
    parts = value.split(".")
    return all(part.isidentifier() for part in parts) and importlib.util.find_spec(parts[0]) is not None


def string_constants(nodes: list[ast.AST]) -> list[ast.Constant]:
    """Every str constant of a parsed module (all its nodes) but docstrings; dict keys get `is_dict_key`."""
    docstrings = {id(node.body[0].value) for node in nodes if isinstance(node, SCOPES) and _has_docstring(node)}
    for node in nodes:
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if key is not None:
                    key.is_dict_key = True
    return [
        node
        for node in nodes
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def _has_docstring(node) -> bool:
    body = getattr(node, "body", None)
    return (
        isinstance(body, list)
        and bool(body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )


# ---------------------------------------------------------------- where a constant names a column
@dataclass
class _Scope:
    """What one function (or the module body) assigns to its local names."""

    assigned: dict[str, list[ast.expr]] = field(default_factory=dict)
    stored_keys: dict[str, list[ast.expr]] = field(default_factory=dict)  # name[key] = ...
    rows: set[str] = field(default_factory=set)  # names bound to rows of to_pydict() / to_pylist()


def column_constants(nodes: list[ast.AST]) -> set[int]:
    """ids of the constants of a parsed module (all its nodes) that name a column of an Arrow table."""
    found: set[int] = set()
    for scope_node in nodes:
        if isinstance(scope_node, SCOPES):
            nodes = list(_scope_nodes(scope_node))
            scope = _bindings(nodes)
            for node in nodes:
                found.update(id(c) for c in _column_uses(node, scope))
    return found


def _scope_nodes(scope_node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one scope, without those of the functions and classes defined in it."""
    todo = list(ast.iter_child_nodes(scope_node))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, SCOPES):
            todo.extend(ast.iter_child_nodes(node))


def _bindings(nodes: list[ast.AST]) -> _Scope:
    scope = _Scope()
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                _bind(scope, target, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            _bind(scope, node.target, node.value)
        elif isinstance(node, (ast.For, ast.comprehension)) and _calls(node.iter, ROW_READERS):
            scope.rows.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
    return scope


def _bind(scope: _Scope, target: ast.expr, value: ast.expr) -> None:
    if isinstance(target, ast.Name):
        scope.assigned.setdefault(target.id, []).append(value)
        if _calls(value, ROW_READERS):
            scope.rows.add(target.id)
    elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
        scope.stored_keys.setdefault(target.value.id, []).append(target.slice)


def _calls(node: ast.expr, names: set[str]) -> bool:
    return isinstance(node, ast.Call) and _function_name(node) in names


def _function_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _column_uses(node: ast.AST, scope: _Scope) -> Iterator[ast.Constant]:
    if isinstance(node, ast.Call):
        name = _function_name(node)
        if name in COLUMN_ACCESSORS:
            for arg in node.args:
                yield from _values(arg, scope)
        if name in TABLE_BUILDERS and node.args:
            yield from _dict_keys(node.args[0], scope)
        for keyword in node.keywords:
            if keyword.arg in COLUMN_KEYWORDS:
                yield from _values(keyword.value, scope)
    elif isinstance(node, ast.Compare) and isinstance(node.ops[0], (ast.In, ast.NotIn)):
        right = node.comparators[0]
        if isinstance(right, ast.Attribute) and right.attr in COLUMN_LISTS:
            yield from _values(node.left, scope)
    elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in scope.rows:
        yield from _values(node.slice, scope)


def _values(node: ast.expr, scope: _Scope, seen: frozenset[str] = frozenset()) -> Iterator[ast.Constant]:
    """The str constants an expression can be: through lists, `+`, `a if c else b` and local names."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        for element in node.elts:
            yield from _values(element, scope, seen)
    elif isinstance(node, ast.BinOp):
        yield from _values(node.left, scope, seen)
        yield from _values(node.right, scope, seen)
    elif isinstance(node, ast.IfExp):
        yield from _values(node.body, scope, seen)
        yield from _values(node.orelse, scope, seen)
    elif isinstance(node, ast.Starred):
        yield from _values(node.value, scope, seen)
    elif isinstance(node, ast.Name) and node.id not in seen:
        for value in scope.assigned.get(node.id, []):
            yield from _values(value, scope, seen | {node.id})


def _dict_keys(node: ast.expr, scope: _Scope) -> Iterator[ast.Constant]:
    if isinstance(node, ast.Dict):
        for key in node.keys:
            if key is not None:
                yield from _values(key, scope)
    elif isinstance(node, ast.Name):
        for value in scope.assigned.get(node.id, []):
            if isinstance(value, ast.Dict):
                yield from _dict_keys(value, scope)
        for key in scope.stored_keys.get(node.id, []):
            yield from _values(key, scope)


# ---------------------------------------------------------------- the tests
def test_owned_literals_appear_only_in_their_owners():
    misplaced = find_misplaced()
    assert not misplaced, "use the constants of the owner module instead:\n" + "\n".join(misplaced)


def test_the_constants_are_defined_only_by_their_owner():
    redefined = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in node.targets if isinstance(node, ast.Assign) else []:
                if isinstance(target, ast.Name) and OWNED_CONSTANTS.get(target.id, module) != module:
                    redefined.append(f"{module}:{node.lineno}: {target.id} = (owned by {OWNED_CONSTANTS[target.id]})")
    assert redefined == []


def test_every_owner_exists_and_defines_its_literal():
    for literal, (kind, owners) in OWNED.items():
        for owner in owners:
            assert (ROOT / owner).is_file(), f"{owner} (owner of {literal!r}) does not exist"
        primary = ROOT / owners[0]
        assert any(
            node.value == literal or (kind == SUFFIX and node.value.endswith(literal))
            for node in string_constants(list(ast.walk(ast.parse(primary.read_text(encoding="utf-8")))))
        ), f"{literal!r} is not written in its owner {owners[0]}: OWNED is out of date"


def _misplaced(source: str, module: str = "sharebert/pipeline/example.py") -> list[str]:
    return check_source(source, module)


def test_names_and_suffixes_are_found_outside_their_owner():
    assert _misplaced('path = folder / "prepare.json"\n') == [
        f"sharebert/pipeline/example.py:1: 'prepare.json' (owned by {FORMATS})"
    ]
    assert len(_misplaced('found = folder.glob("*.hdf5")\nname = f"{split}.hdf5"\n')) == 2
    assert _misplaced('WORKER_MODULES = ("pyarrow.parquet",)\n') == []
    assert _misplaced('path = folder / "prepare.json"\n', module=FORMATS) == []


def test_docstrings_and_messages_are_not_uses():
    source = '''
def f(folder):
    """Reads prepare.json."""
    raise ValueError(f"{folder}: no prepare.json, no *.hdf5 files")
'''
    assert _misplaced(source) == []
    assert _misplaced('"""Module text: "vocab.txt" and .parquet"""\n') == []


def test_column_names_count_where_they_name_a_column():
    uses = """
def write(table, pa, pq, path, keep_text, spill):
    a = table.column("sentences")
    b = pq.ParquetFile(path).read(columns=["id"])
    columns = ["source"] + (["text"] if keep_text else [])
    c = read_spill(spill, columns)
    if "text" in table.column_names:
        pass
    fields = {"id": 1}
    fields["text"] = 2
    pa.table(fields)
    rows = table.to_pydict()
    d = rows["sentences"]
    e = [r["source"] for r in table.to_pylist()]
"""
    lines = sorted(int(m.split(":")[1]) for m in _misplaced(uses))
    assert lines == [3, 4, 5, 5, 7, 9, 10, 13, 14]


def test_column_names_elsewhere_are_not_columns():
    others = """
INPUT_KINDS = ("wiki", "text")
def record(self, args):
    summary = {"source": "preset", "sentences": self.sentences}
    summary["source"] = args.source
    kind = "text"
    return summary, kind, args.get("id")
"""
    assert _misplaced(others) == []


def test_dataset_names_are_model_keywords_only_as_trainer_dict_keys():
    source = 'inputs = {"input_ids": arrays["input_ids"]}\n'
    assert len(_misplaced(source, module="sharebert/pipeline/mask/stage.py")) == 2
    assert [m.split(":")[1] for m in _misplaced(source, module="sharebert/trainer/pretrain/data.py")] == ["1"]
