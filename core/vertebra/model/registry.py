"""The registries of model parts (imports neither torch nor plugin code).

Each registry is tied to a base class and to the entry-point group its parts come from.
"""

from vertebra.model.metrics.registry import METRICS
from vertebra.plugins._registry import Registry

__all__ = ["BACKBONES", "HEADS", "LOSSES", "METRICS", "MODELS", "NECKS", "TOKENIZERS"]

BACKBONES = Registry(
    "BACKBONES",
    group="vertebra.backbones",
    base="vertebra.model.base_model:BaseModel",
    description="Feature extractors.",
    weights=True,
)
NECKS = Registry(
    "NECKS",
    group="vertebra.necks",
    base="vertebra.model.base_model:BaseModel",
    description="Reshape or pool backbone features.",
    weights=True,
)
HEADS = Registry(
    "HEADS",
    group="vertebra.heads",
    base="vertebra.model.base_model:BaseModel",
    description="Turn features into task logits.",
    weights=True,
)
LOSSES = Registry(
    "LOSSES",
    group="vertebra.losses",
    base="torch.nn:Module",
    description="Training objectives.",
    weights=True,
)
TOKENIZERS = Registry(
    "TOKENIZERS",
    group="vertebra.tokenizers",
    base="vertebra.model.tokenizers:BaseTokenizer",
    description="Turn text into token ids.",
)
MODELS = Registry(
    "MODELS",
    group="vertebra.models",
    base="vertebra.model.networks.train_module:TrainModule",
    description="Networks that wire parts together for training and evaluation.",
    weights=True,
)
