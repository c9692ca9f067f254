"""Input readers of `sharebert prepare`. Each yields RawDocuments in a fixed order; none tokenizes.

wiki: MediaWiki XML dumps; books: a folder of plain-text books; text: blank-line separated
documents; hf: Hugging Face datasets; builtin: text that ships with Python (no download).
"""

from __future__ import annotations

from .common import Source


def open_source(kind: str, path: str, label: str, *, text_column: str = "text", split: str = "train") -> Source:
    """The reader for one input (`label` names it inside document ids)."""
    if kind == "wiki":
        from .wiki import WikiDumpSource

        return WikiDumpSource(path, label)
    if kind == "books":
        from .books import BooksSource

        return BooksSource(path, label)
    if kind == "text":
        from .text import TextSource

        return TextSource(path, label)
    if kind == "hf":
        from .hf import HFDatasetSource

        return HFDatasetSource(path, label, text_column=text_column, split=split)
    if kind == "builtin":
        from .builtin import BuiltinSource

        return BuiltinSource(path, label)
    raise ValueError(f"unknown input kind {kind!r}")


__all__ = ["Source", "open_source"]
