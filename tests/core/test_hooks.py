"""Config hooks of plugin modules (`vertebra.plugins` entry points), through load_run_config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from vertebra.cli import main
from vertebra.config import load_run_config
from vertebra.errors import ConfigError, PluginHookError
from vertebra.plugins import broken_plugins, get_plugin_manager
from vertebra.testing import PluginSandbox

RUN = """\
MODEL:
  NAME: Classifier
  BACKBONE: {NAME: MLP, IN_FEATURES: 64, HIDDEN: [16]}
  HEAD: {NAME: ClassifierHead, DIM: 16}
  LOSS: {NAME: CrossEntropy}
"""

GOOD_HOOKS = """\
from vertebra import hookimpl


@hookimpl
def vertebra_prepare_config(config, source):
    # A site default: every head without NUM_CLASSES gets the house value.
    head = config.get("MODEL", {}).get("HEAD", {})
    head.setdefault("NUM_CLASSES", 10)


@hookimpl
def vertebra_check_config(config):
    if config.MODEL.HEAD.NUM_CLASSES > 100:
        return ["MODEL.HEAD.NUM_CLASSES: this site trains at most 100 classes"]
    return None
"""


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(RUN)
    return path


def add_hooks(sandbox: PluginSandbox, name: str, module_text: str) -> None:
    module = name.replace("-", "_")
    sandbox.add(
        name,
        {"vertebra.plugins": {name: f"{module}.hooks"}},
        {f"{module}/__init__.py": "", f"{module}/hooks.py": module_text},
    )


def test_prepare_and_check_hooks_run_around_validation(
    vertebra_plugins: PluginSandbox, run_file: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        load_run_config(run_file)  # no plugin yet: NUM_CLASSES is missing
    assert [i.path for i in info.value.issues] == ["MODEL.HEAD.NUM_CLASSES"]

    add_hooks(vertebra_plugins, "vb-site-hooks", GOOD_HOOKS)
    cfg = load_run_config(run_file)
    assert cfg.MODEL.HEAD.NUM_CLASSES == 10
    with pytest.raises(ConfigError) as info:
        load_run_config(run_file, ["MODEL.HEAD.NUM_CLASSES=500"])
    assert str(info.value) == (
        f"1 error in {run_file}:\n  MODEL.HEAD.NUM_CLASSES: this site trains at most 100 classes"
    )
    assert broken_plugins() == []
    assert get_plugin_manager().has_plugin("vb-site-hooks:vb-site-hooks")


BROKEN_HOOKS = {
    "vb-hook-import": (
        "import vb_hook_missing_dependency\n",
        "ModuleNotFoundError: No module named 'vb_hook_missing_dependency'",
    ),
    "vb-hook-typo": (
        "from vertebra import hookimpl\n\n@hookimpl\ndef vertebra_prepare_conifg(config, source):\n"
        "    pass\n",
        "TypeError: 'vertebra_prepare_conifg' is not a vertebra hook; did you mean "
        "'vertebra_prepare_config'?",
    ),
    "vb-hook-unmarked": (
        "def vertebra_check_config(config):\n    return ['never']\n",
        "TypeError: function 'vertebra_check_config' is not marked with @vertebra.hookimpl",
    ),
    "vb-hook-arguments": (
        "from vertebra import hookimpl\n\n@hookimpl\ndef vertebra_check_config(cfg):\n"
        "    return ['never']\n",
        "PluginValidationError: ",
    ),
}


def test_a_broken_hook_module_is_reported_and_isolated(
    vertebra_plugins: PluginSandbox,
    run_file: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, (text, _) in BROKEN_HOOKS.items():
        add_hooks(vertebra_plugins, name, text)
    add_hooks(vertebra_plugins, "vb-site-hooks", GOOD_HOOKS)
    with caplog.at_level(logging.WARNING, logger="vertebra.plugins"):
        cfg = load_run_config(run_file)  # the good plugin still works
    assert cfg.MODEL.HEAD.NUM_CLASSES == 10
    broken = {error.distribution: error for error in broken_plugins()}
    assert sorted(broken) == sorted(BROKEN_HOOKS)
    for name, (_, cause) in BROKEN_HOOKS.items():
        module = name.replace("-", "_")
        message = str(broken[name])
        assert message.startswith(
            f"cannot load hook plugin from entry point '{name} = {module}.hooks' in group "
            f"'vertebra.plugins' of distribution '{name} 0.1.0': {cause}"
        ), message
        assert broken[name].__cause__ is not None
        assert broken[name].entry_point == f"{name} = {module}.hooks"
        assert f"vertebra: {message} (skipped; to run without it, leave {name} out with " in (
            "\n".join(caplog.messages)
        )
    manager = get_plugin_manager()
    assert not any(manager.has_plugin(f"{n}:{n}") for n in BROKEN_HOOKS)
    # `plugins list --check` reports them with their distributions.
    assert main(["plugins", "list", "--check", "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    hooks = sorted(
        (p["kind"], *p["distributions"], p["name"])
        for p in problems
        if p["group"] == "vertebra.plugins"
    )
    assert hooks == sorted(("hook", n, n) for n in BROKEN_HOOKS)


def test_a_hook_that_raises_is_named(vertebra_plugins: PluginSandbox, run_file: Path) -> None:
    add_hooks(
        vertebra_plugins,
        "vb-hook-crash",
        "from vertebra import hookimpl\n\n@hookimpl\ndef vertebra_prepare_config(config, source):\n"
        "    raise RuntimeError('no network')\n",
    )
    with pytest.raises(PluginHookError) as info:
        load_run_config(run_file)
    assert str(info.value) == (
        "hook vertebra_prepare_config of plugin 'vb-hook-crash:vb-hook-crash' (distribution "
        "'vb-hook-crash') failed: RuntimeError: no network; to run without it, set "
        "VERTEBRA_PLUGINS='' (no plugin distribution loads)"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_hook_may_report_config_errors_itself(
    vertebra_plugins: PluginSandbox, run_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_hooks(
        vertebra_plugins,
        "vb-hook-strict",
        "from vertebra import hookimpl\nfrom vertebra.errors import ConfigError, ConfigIssue\n\n"
        "@hookimpl\ndef vertebra_prepare_config(config, source):\n"
        "    raise ConfigError([ConfigIssue('MODEL', 'site policy: no MLPs')], source=source)\n",
    )
    assert main(["validate", str(run_file)]) == 2
    assert capsys.readouterr().err == (
        f"vertebra validate: error: 1 error in {run_file}:\n  MODEL: site policy: no MLPs\n"
    )


def test_a_check_hook_may_return_one_bare_message(
    vertebra_plugins: PluginSandbox, run_file: Path
) -> None:
    add_hooks(vertebra_plugins, "vb-site-hooks", GOOD_HOOKS)
    add_hooks(
        vertebra_plugins,
        "vb-hook-bare",
        "from vertebra import hookimpl\n\n@hookimpl\ndef vertebra_check_config(config):\n"
        "    return 'one message, given bare'\n",
    )
    with pytest.raises(ConfigError) as info:
        load_run_config(run_file)
    assert [str(i) for i in info.value.issues] == ["one message, given bare"]


def test_a_left_out_hook_distribution_does_not_load(
    vertebra_plugins: PluginSandbox, run_file: Path
) -> None:
    from vertebra import plugins

    add_hooks(vertebra_plugins, "vb-site-hooks", GOOD_HOOKS)
    index = plugins.PluginIndex.scan([str(vertebra_plugins.root)], allow=[])
    with plugins.use_index(index):
        assert not get_plugin_manager().has_plugin("vb-site-hooks:vb-site-hooks")
        with pytest.raises(ConfigError):
            load_run_config(run_file)
