"""`Config`: scepter's in-code config object, for parts ported from scepter.

scepter parts build a default block in code, `cfg.get('NECK', Config(cfg_dict={'NAME':
'Identity'}, load=False))`, and hand it to a registry's `build`. This `Config` is a
read-only mapping over `cfg_dict` whose keys are attributes too, so `build` validates it
like any block. Reading files is vertebra's own (`vertebra.config.load`): `load=True` is
refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from vertebra.errors import UserError

__all__ = ["Config"]


class Config(Mapping[str, Any]):
    """A block of settings written in code: `Config(cfg_dict={...}, load=False)`."""

    def __init__(
        self,
        cfg_dict: Mapping[str, Any] | None = None,
        load: bool = True,
        cfg_file: str | None = None,
        logger: Any = None,
        parser_ins: Any = None,
    ) -> None:
        if load or cfg_file is not None or parser_ins is not None:
            raise UserError(
                "vertebra's Config holds a block written in code (Config(cfg_dict={...}, "
                "load=False)); read config files with vertebra.config.load or the command line"
            )
        self.cfg_dict = dict(cfg_dict or {})
        self.logger = logger

    def __getitem__(self, key: str) -> Any:
        return self.cfg_dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.cfg_dict)

    def __len__(self) -> int:
        return len(self.cfg_dict)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["cfg_dict"][key]
        except KeyError:
            raise AttributeError(key) from None

    def have(self, key: str) -> bool:
        """Whether the block sets `key` (scepter's name for `key in cfg`)."""
        return key in self.cfg_dict

    def get_dict(self) -> dict[str, Any]:
        """The block as a plain dict."""
        return dict(self.cfg_dict)

    def __repr__(self) -> str:
        return f"Config({self.cfg_dict!r})"
