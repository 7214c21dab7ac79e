"""Networks of vertebra-vision."""
