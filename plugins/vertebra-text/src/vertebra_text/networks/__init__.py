"""Networks of vertebra-text."""
