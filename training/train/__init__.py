"""Stage 2: a dataset and a base model to a registered adapter (LoRA, freeze, full).

Entry: ``training.train.finetune.finetune``."""
