"""Stage 1: conversation logs and transcripts to a curated, redacted, split dataset.

Entry: ``training.data.build.build_dataset``."""
