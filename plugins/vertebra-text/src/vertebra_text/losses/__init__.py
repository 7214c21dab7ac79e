"""Losses of vertebra-text: InfoNCE for image-text contrastive training."""
