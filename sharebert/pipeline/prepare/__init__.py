"""`sharebert prepare`: raw text to tokenized, token-balanced Parquet shards (docs/prepare.md)."""
