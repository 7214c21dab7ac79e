"""Run a method without gradients, whoever calls it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["no_grad_method"]


def no_grad_method(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` under `torch.no_grad()`; marks itself so that wrapping twice is a no-op."""
    if getattr(fn, "__vertebra_no_grad__", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return fn(*args, **kwargs)

    wrapper.__vertebra_no_grad__ = True  # type: ignore[attr-defined]
    return wrapper
