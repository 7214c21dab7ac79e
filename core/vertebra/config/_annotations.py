"""What a schema field's type annotation holds: models, lists, `None`, literal choices.

The one walker of type annotations: validation, JSON Schema, templates and plugin checks
ask these functions rather than taking `typing.get_args` apart themselves. `Annotated`
metadata is looked through everywhere, and unions are flattened (`A | (B | None)` is
`A | B | None`).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from pydantic import BaseModel

__all__ = ["allows_none", "is_list", "literal_choices", "models_in", "section_model"]

_UNIONS = (typing.Union, types.UnionType)
_LISTS = (list, tuple, set, frozenset, Sequence)


def _options(annotation: Any) -> Iterator[Any]:
    """The alternatives of `annotation`: `Annotated` removed, unions flattened."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        yield from _options(typing.get_args(annotation)[0])
    elif origin in _UNIONS:
        for arg in typing.get_args(annotation):
            yield from _options(arg)
    else:
        yield annotation


def _is_none(option: Any) -> bool:
    return option is None or option is type(None)


def _is_model(option: Any) -> bool:
    return isinstance(option, type) and issubclass(option, BaseModel)


def allows_none(annotation: Any) -> bool:
    """Whether `None` is a valid value: `X | None`, `Optional[X]`, `None`."""
    return any(_is_none(o) for o in _options(annotation))


def is_list(annotation: Any) -> bool:
    """Whether the value is (or may be) a sequence of items: `list[X]`, `list[X] | None`."""
    return any(typing.get_origin(o) in _LISTS for o in _options(annotation))


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a field that holds one directly: `Model` or `Model | None`, else None.

    A list or mapping of models, or a union of a model with another type, holds none.
    """
    found = [o for o in _options(annotation) if not _is_none(o)]
    return found[0] if len(found) == 1 and _is_model(found[0]) else None


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every model that `annotation` mentions, at any depth (`dict[str, list[M]]` too), once."""
    found: list[type[BaseModel]] = []
    for option in _walk(annotation):
        if _is_model(option) and option not in found:
            found.append(option)
    return found


def literal_choices(annotation: Any) -> list[Any]:
    """The values of every `Literal` in `annotation`, at any depth."""
    found: list[Any] = []
    for option in _walk(annotation):
        if typing.get_origin(option) is typing.Literal:
            found.extend(typing.get_args(option))
    return found


def _walk(annotation: Any) -> Iterator[Any]:
    """Every type inside `annotation`, outermost first; a `Literal`'s values are not types."""
    for option in _options(annotation):
        yield option
        if typing.get_origin(option) is not typing.Literal:
            for arg in typing.get_args(option):
                if arg is not Ellipsis:
                    yield from _walk(arg)
