"""`PRETRAINED: true`: the installed weights that declare themselves a part's default.

A manifest's `default_for` is a mapping with the part's `NAME` and the keys that decide
its shapes (`{"NAME": "ResNet", "DEPTH": 50}`). A part block with `PRETRAINED: true`
gets the one installed weights package whose manifest fits the block's registry and
`NAME` and whose `default_for` keys all equal the block's values. None, or more than one,
is a config error that names the candidates. Reading manifests imports no torch.
"""

from __future__ import annotations

import json
from typing import Any

from vertebra.errors import UserError
from vertebra.weights._index import WEIGHTS_GROUP, InstalledWeights, installed
from vertebra.weights._manifest import Manifest

__all__ = ["DefaultWeightsError", "default_weights"]


class DefaultWeightsError(UserError):
    """No installed weights, or several, are the default for a part block."""


def _bare(name: str) -> str:
    return name.rpartition(":")[2]


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _keys(default_for: dict[str, Any]) -> str:
    shown = [f"{k} {_shown(v)}" for k, v in default_for.items() if k != "NAME"]
    return ", ".join(shown)


def _values(cfg: Any) -> dict[str, Any]:
    """The block's settings as a manifest states them (JSON: tuples are lists)."""
    try:
        return dict(cfg.model_dump(mode="json"))
    except Exception:  # a setting JSON cannot hold: compared as it is
        return dict(cfg.model_dump())


def default_weights(registry: str, cfg: Any) -> str:
    """`DISTRIBUTION:name` of the installed weights that are the default for `cfg`, a
    validated part config of `registry`; `DefaultWeightsError` naming the candidates."""
    name = _bare(cfg.NAME)
    values = _values(cfg)
    candidates: list[tuple[InstalledWeights, Manifest]] = []
    broken: list[str] = []
    for w in installed():
        try:
            m = w.manifest()
        except UserError as exc:
            broken.append(f"'{w.name}' of {w.distribution} {w.version}: {exc}")
            continue
        if m.registry.upper() == registry.upper() and _bare(m.part) == name:
            candidates.append((w, m))
    chosen = [
        (w, m)
        for w, m in candidates
        if m.default_for is not None
        and _bare(str(m.default_for.get("NAME"))) == name
        and all(k in values and values[k] == v for k, v in m.default_for.items() if k != "NAME")
    ]
    if len(chosen) == 1:
        w = chosen[0][0]
        return f"{w.distribution}:{w.name}"
    # A broken manifest may be the default that was meant: the error names each one.
    unread = f"; broken weights entries, left out: {'; '.join(broken)}" if broken else ""
    # What the block's shape-deciding keys are, as the installed defaults for it state them.
    deciding = sorted(
        {k for _, m in candidates if m.default_for for k in m.default_for if k != "NAME"}
    )
    these = ", ".join(f"{k} {_shown(values.get(k))}" for k in deciding if k in values)
    what = f"{registry} '{name}'" + (f" with {these}" if these else "")
    if chosen:
        forms = " or ".join(f"'WEIGHTS: {w.distribution}:{w.name}'" for w, _ in chosen)
        listed = " and ".join(f"'{w.name}' ({w.distribution} {w.version})" for w, _ in chosen)
        raise DefaultWeightsError(
            f"{listed} are each installed as the default for {what}; pick one with {forms} "
            "instead of PRETRAINED: true" + unread
        )
    if not candidates:
        raise DefaultWeightsError(
            f"no installed weights are the default for {what}, and none installed fit "
            f"{registry} '{name}' at all (`vertebra weights list` shows what is installed; "
            f"a weights package of group '{WEIGHTS_GROUP}' declares itself a default with "
            "'default_for' in its manifest, which `vertebra weights pack --default-for` writes)"
            + unread
        )
    described = []
    for w, m in candidates:
        if m.default_for is None:
            described.append(f"'{w.name}' (not a default)")
        else:
            keys = _keys(m.default_for)
            described.append(f"'{w.name}' (default for {keys or 'any ' + name})")
    raise DefaultWeightsError(
        f"no installed weights are the default for {what}; installed for {name}: "
        f"{', '.join(described)}; name one with WEIGHTS instead of PRETRAINED: true" + unread
    )
