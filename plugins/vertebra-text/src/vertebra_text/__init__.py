"""vertebra-text: tokenizers, transformer encoders, TextClassifier and text datasets.

Every part is declared as an entry point in this distribution's pyproject.toml; importing
this package imports nothing heavy, so listing parts never loads torch or transformers.
"""

__version__ = "0.1.0"
