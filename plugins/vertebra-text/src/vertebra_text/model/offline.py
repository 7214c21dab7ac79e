"""Import transformers with the hub switched off: vertebra-text never downloads anything."""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["PATH_DESCRIPTION", "import_transformers"]

PATH_DESCRIPTION = (
    "Local folder with the files `save_pretrained` writes, or 'package:NAME/inside' for a "
    "folder that an installed Python package ships; never downloaded."
)


def import_transformers() -> ModuleType:
    """The `transformers` package; loads go through `local_files_only=True` as well."""
    # Read by huggingface_hub when it is first imported; local_files_only covers the rest.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    return transformers
