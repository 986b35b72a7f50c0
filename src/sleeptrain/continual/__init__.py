"""Continual learning with Sleep Replay Consolidation (Tadros et al., Nature Communications 2022)."""
