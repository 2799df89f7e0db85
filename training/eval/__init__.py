"""Stage 3: variants answered on held-out items, per-item metrics, paired comparisons.

Entry: ``training.eval.evaluate``."""
