"""`sharebert finetune`: GLUE fine-tuning and evaluation (docs/finetune.md)."""
