"""Exceptions of vertebra.

`UserError` and its subclasses are mistakes in user input (a config, a name, a file): the
command line prints their message and exits with status 2, never with a traceback. Other
`VertebraError`s (a broken plugin, an exception raised in a plugin's code) exit with
status 1, also without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

__all__ = [
    "BatchKeysError",
    "ConfigError",
    "ConfigIssue",
    "NonFiniteLossError",
    "PartSchemaError",
    "PluginError",
    "PluginHookError",
    "PluginLoadError",
    "RegistrationError",
    "RegistrationWarning",
    "UnknownPartError",
    "UserError",
    "VertebraError",
    "close_match",
]


class VertebraError(Exception):
    """Base of every error vertebra raises on purpose."""


class UserError(VertebraError):
    """A mistake in user input; reported as a message and exit status 2."""


class BatchKeysError(UserError, TypeError):
    """A batch whose keys are not what the network's `forward_train`/`forward_test` reads.

    The network raises it naming itself and the keys; the trainer and `vertebra eval` add
    the dataset that gave the batch (`for_dataset`).
    """

    def __init__(
        self,
        network: str,
        method: str,
        keys: list[str],
        missing: list[str],
        unexpected: list[str],
        dataset: str | None = None,
    ) -> None:
        self.network, self.method, self.keys = network, method, keys
        self.missing, self.unexpected, self.dataset = missing, unexpected, dataset
        given = f"{dataset} gives" if dataset else "the batch has"
        wrong = []
        if missing:
            wrong.append(f"it reads {_listed(missing)}, which the batch lacks")
        if unexpected:
            wrong.append(f"it takes no {_listed(unexpected)}")
        super().__init__(
            f"{given} batches with keys {_listed(keys) or 'none'}, which network {network}'s "
            f"{method} cannot take: {'; '.join(wrong)}. Use a dataset that gives the keys the "
            "network reads, or a network that reads the dataset's keys"
        )

    def for_dataset(self, dataset: str) -> BatchKeysError:
        """The same error, naming the dataset that gave the batch."""
        return BatchKeysError(
            self.network, self.method, self.keys, self.missing, self.unexpected, dataset
        )


def _listed(keys: list[str]) -> str:
    return ", ".join(repr(k) for k in keys)


class ConfigIssue(NamedTuple):
    """One problem in a config: where it is (a dotted path, may be empty) and what is wrong.

    `override` is the command-line override (`KEY=VALUE` of `--set KEY=VALUE`) that wrote
    the value at `path` or above it, when one did: the message then says so.
    """

    path: str
    message: str
    override: str | None = None

    def __str__(self) -> str:
        if self.override is not None:
            given = f"--set {_shell_word(self.override)}"
            where = f"{self.path} (from {given})" if self.path else given
        else:
            where = self.path
        return f"{where}: {self.message}" if where else self.message


def _shell_word(text: str) -> str:
    """`text` as a shell needs it typed (`'A=[1, 2]'`), cut short when it is long."""
    if len(text) > 60:
        text = text[:57] + "..."
    import shlex  # here: every command imports this module, few print a shell word

    return shlex.quote(text)


class ConfigError(UserError, ValueError):
    """Every problem found in one config, reported together."""

    def __init__(self, issues: Iterable[ConfigIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        count = len(self.issues)
        where = f" in {self.source}" if self.source else ""
        overridden = sum(1 for issue in self.issues if issue.override is not None)
        if overridden and overridden == count:
            # The file is not to blame: every problem was typed on the command line.
            where = f" in the --set overrides{f' of {self.source}' if self.source else ''}"
        elif overridden:
            where = f" in {self.source or 'the config'} and its --set overrides"
        head = f"{count} error{'s' if count != 1 else ''}{where}:"
        return "\n".join([head, *(f"  {issue}" for issue in self.issues)])


class UnknownPartError(UserError, KeyError):
    """A name that no registry entry answers to, or that several distributions offer."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RegistrationError(VertebraError):
    """A part registered under a bad name or with the wrong base, or a factory that
    returned something its registry does not take."""


class PluginLoadError(VertebraError):
    """An entry point that could not be loaded; names the distribution and the cause.

    The original exception is chained as `__cause__`; `distribution` and `entry_point`
    (`name = module:attr`) say where the broken entry point is declared.
    """

    def __init__(
        self, message: str, *, distribution: str | None = None, entry_point: str | None = None
    ) -> None:
        super().__init__(message)
        self.distribution = distribution
        self.entry_point = entry_point


class PartSchemaError(UserError, PluginLoadError):
    """A part whose schema cannot be derived: a `para_dict` default or an argument that has
    no config type. Exit status 2, like a config mistake; the checker reports it as the
    part's schema problem."""


class RegistrationWarning(UserWarning):
    """An in-process registration that shadows or replaces a part of the same name."""


class PluginHookError(VertebraError):
    """A hook implementation raised; names the plugin and the hook."""


class PluginError(VertebraError):
    """A part's code raised while a run used it (its forward, a dataset's `__getitem__`, a
    metric): the plugin's error, not the user's; exit status 1.

    `part` is `registry:Name` (`BACKBONES:ResNet`) and `distribution` the distribution that
    offers it (None for a class registered in this process). The original exception is
    chained as `__cause__`.
    """

    def __init__(
        self, message: str, *, part: str | None = None, distribution: str | None = None
    ) -> None:
        super().__init__(message)
        self.part = part
        self.distribution = distribution


class NonFiniteLossError(VertebraError):
    """The training loss became NaN or infinite; the run stops (exit status 3)."""


def close_match(word: str, choices: Sequence[str]) -> str | None:
    """The choice closest to `word`, case-insensitively, if any is close (for "did you mean")."""
    import difflib  # here: every command imports this module, few suggest a name

    by_upper = {c.upper(): c for c in choices}
    found = difflib.get_close_matches(word.upper(), list(by_upper), n=1, cutoff=0.6)
    return by_upper[found[0]] if found else None
