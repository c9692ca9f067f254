"""`sharebert pretrain`: masked-LM pretraining with DeepSpeed (docs/pretrain.md)."""
