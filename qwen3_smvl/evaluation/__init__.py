"""Accuracy benchmarks (lmms-eval, lm-eval) and the model class the harnesses call."""
