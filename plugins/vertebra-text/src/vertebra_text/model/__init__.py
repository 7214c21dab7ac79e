"""Model parts of vertebra-text: tokenizers, backbones, necks and networks."""
