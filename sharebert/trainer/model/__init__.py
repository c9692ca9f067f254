"""The ShareBERT model: its config, the encoder and heads, model folders (docs/model.md)."""
