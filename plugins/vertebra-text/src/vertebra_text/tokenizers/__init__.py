"""Tokenizers: a transformers tokenizer from a local folder, and one trained on a corpus."""
