"""The schema of a whole run config (the YAML file `vertebra train` reads)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from vertebra.schema import PartConfig, PartOf, validate_tree

__all__ = ["RunConfig", "validate_run_config"]


class RunConfig(BaseModel):
    """A run: the network to build (and, with the trainer, its data, optimizer and settings)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    MODEL: Annotated[PartConfig, PartOf("models")] = Field(
        description="The network (a MODELS part) with its nested part configs."
    )


def validate_run_config(raw: Any, source: str | None = None) -> RunConfig:
    """Validate a loaded config; raises `ConfigError` with every problem at once."""
    return validate_tree(RunConfig, raw, source=source)
