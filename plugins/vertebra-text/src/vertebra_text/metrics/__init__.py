"""Metrics of vertebra-text: RetrievalRecall over a whole evaluation set."""
