"""Necks for token features."""
