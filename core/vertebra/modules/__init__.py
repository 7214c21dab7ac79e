"""scepter's `scepter.modules` import paths, for files ported with `scepter` read as `vertebra`.

Only what ported part files import from there lives here: `modules.utils.config`.
"""

__all__: list[str] = []
