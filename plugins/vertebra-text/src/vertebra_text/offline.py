"""Import transformers with the hub switched off: vertebra-text never downloads anything."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

__all__ = ["PATH_DESCRIPTION", "import_transformers", "quiet_loading"]

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


@contextmanager
def quiet_loading(transformers: ModuleType) -> Iterator[None]:
    """No progress bar while loading weights: it would break into the trainer's log lines."""
    logging = transformers.utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
