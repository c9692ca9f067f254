"""sharebert: pretrain small parameter-shared BERT encoders (ShareBERT) and fine-tune them on GLUE."""

__version__ = "0.1.0"
