"""Whether stored tensors fit a module, and what does not, before anything is loaded.

Checkpoints and pretrained-weight files both answer this from tensor names and shapes alone
(a safetensors header is enough), so a file that does not fit is reported in full and
nothing is half-loaded. Imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

__all__ = ["mismatches"]

#: How many names a message shows for each kind of mismatch.
SHOWN = 5


def mismatches(
    own: Mapping[str, Sequence[int]],
    stored: Mapping[str, Sequence[int]],
    source: str = "the file",
    optional: Collection[str] = (),
) -> list[str]:
    """What keeps `stored` (name -> shape) from loading into a module whose tensors are `own`.

    One message per kind (missing, not in the model, shape), empty when everything fits.
    Names in `optional` may be absent from `stored` (weights tied to a stored tensor).
    """
    missing = [k for k in own if k not in stored and k not in optional]
    unexpected = [k for k in stored if k not in own]
    shapes = [
        f"{k} {tuple(stored[k])} in {source}, {tuple(own[k])} in the model"
        for k in own  # in the module's order, which reads like its layers
        if k in stored and tuple(own[k]) != tuple(stored[k])
    ]
    out = []
    for label, names in (
        (f"missing from {source}", missing),
        ("not in the model", unexpected),
        ("shape differs", shapes),
    ):
        if names:
            more = f" (and {len(names) - SHOWN} more)" if len(names) > SHOWN else ""
            out.append(f"{len(names)} {label}: {', '.join(names[:SHOWN])}{more}")
    return out
