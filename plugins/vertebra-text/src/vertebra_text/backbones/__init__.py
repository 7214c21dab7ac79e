"""Text backbones: token ids and attention mask in, features `[B, T, D]` out."""
