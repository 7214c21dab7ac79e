"""Registries over real fixture distributions: names, building, broken plugins, conflicts."""

from __future__ import annotations

import logging
import sys

import pytest
from pydantic import Field
from torch import nn
from vertebra import plugins
from vertebra.errors import ConfigError, PluginLoadError, RegistrationError, UnknownPartError
from vertebra.model.base_model import BaseModel
from vertebra.model.registry import BACKBONES, HEADS, LOSSES
from vertebra.schema import BackboneCfg, HeadCfg, PartConfig, validate_tree
from vertebra.testing import PluginSandbox

from tests.core import dists

FIXTURE_MODULES = (
    "vb_good",
    "vb_import_error",
    "vb_syntax_error",
    "vb_missing_attr",
    "vb_wrong_base",
    "vb_clash_a",
    "vb_clash_b",
)


def loaded_fixture_modules() -> list[str]:
    return sorted(m for m in sys.modules if m.split(".")[0] in FIXTURE_MODULES)


def test_names_membership_and_unknown_names_import_no_plugin(broken_world: PluginSandbox) -> None:
    names = BACKBONES.names()
    for name in ("TinyRes", "WideRes", "BrokenImport", "BrokenSyntax", "Missing", "NotAPart"):
        assert name in names
    assert "MLP" in names  # the core's own, found the same way
    assert names.count("Twin") == 1
    assert "TinyRes" in BACKBONES and "vb-good:TinyRes" in BACKBONES
    assert "TinyRez" not in BACKBONES and "vb-other:TinyRes" not in BACKBONES
    assert 3 not in BACKBONES
    assert "LinearHead" in HEADS and "LinearHead" not in BACKBONES
    with pytest.raises(UnknownPartError) as info:
        BACKBONES.get("TinyRez")
    assert str(info.value) == "'TinyRez' is not a registered backbone; did you mean 'TinyRes'?"
    with pytest.raises(ConfigError) as config_info:
        BACKBONES.build({"NAME": "TinyRez"})
    assert [str(i) for i in config_info.value.issues] == [
        "NAME: 'TinyRez' is not a registered backbone; did you mean 'TinyRes'?"
    ]
    assert loaded_fixture_modules() == []


def test_names_take_shell_wildcards_in_any_case(broken_world: PluginSandbox) -> None:
    assert BACKBONES.names("tiny*") == ["TinyRes"]
    assert BACKBONES.names("*RES") == ["TinyRes", "WideRes"]
    assert BACKBONES.names("?ideRes") == ["WideRes"]
    assert BACKBONES.names("Broken[IS]*") == ["BrokenImport", "BrokenSyntax"]
    assert BACKBONES.names("nothing*") == []
    assert list(BACKBONES) == BACKBONES.names() and len(BACKBONES) == len(BACKBONES.names())
    assert loaded_fixture_modules() == []


def test_building_imports_that_part_module_only(broken_world: PluginSandbox) -> None:
    logger = logging.getLogger("test")
    origin = BACKBONES.origin("TinyRes")
    assert origin == (
        "BACKBONES",
        "TinyRes",
        "vb-good",
        "1.2.3",
        "vb_good.parts:TinyRes",
        False,
        True,
        None,
    )
    model = BACKBONES.build({"NAME": "TinyRes", "DEPTH": 3}, logger=logger)
    assert isinstance(model, BaseModel) and len(model.blocks) == 3
    assert model.cfg.DEPTH == 3 and model.cfg.WIDTH == 8 and model.logger is logger
    assert loaded_fixture_modules() == ["vb_good", "vb_good.parts"]
    assert BACKBONES.origin("TinyRes").loaded is True
    assert BACKBONES.origin("vb-good:TinyRes").qualified_name == "vb-good:TinyRes"
    assert BACKBONES.get("TinyRes") is type(model)
    # A validated config builds as it is; NAME may name the distribution.
    validated = BACKBONES.validate({"NAME": "vb-good:WideRes", "WIDTH": 4})
    wide = BACKBONES.build(validated)
    assert type(wide).__name__ == "WideRes" and wide.cfg is validated


BROKEN = [
    (
        "BrokenImport",
        "vb-import-error",
        "vb_import_error.parts:BrokenImport",
        ModuleNotFoundError,
        "ModuleNotFoundError: No module named 'vb_no_such_module_anywhere'",
    ),
    (
        "BrokenSyntax",
        "vb-syntax-error",
        "vb_syntax_error.parts:BrokenSyntax",
        SyntaxError,
        "SyntaxError: ",
    ),
    (
        "Missing",
        "vb-missing-attr",
        "vb_missing_attr.parts:NoSuchClass",
        AttributeError,
        "AttributeError: module 'vb_missing_attr.parts' has no attribute 'NoSuchClass'",
    ),
    (
        "NotAPart",
        "vb-wrong-base",
        "vb_wrong_base.parts:NotAPart",
        TypeError,
        "<class 'vb_wrong_base.parts.NotAPart'> is not a subclass of "
        "vertebra.model.base_model.BaseModel (the base of every BACKBONES part)",
    ),
]


@pytest.mark.parametrize(("name", "dist", "value", "cause", "detail"), BROKEN)
def test_a_broken_entry_point_names_distribution_entry_point_and_cause(
    broken_world: PluginSandbox,
    name: str,
    dist: str,
    value: str,
    cause: type[BaseException],
    detail: str,
) -> None:
    with pytest.raises(PluginLoadError) as info:
        BACKBONES.build({"NAME": name})  # validation needs the schema: same load error
    error = info.value
    prefix = (
        f"cannot load backbone '{name}' from entry point '{name} = {value}' in group "
        f"'vertebra.backbones' of distribution '{dist} 0.1.0': "
    )
    assert str(error).startswith(prefix + detail), str(error)
    assert isinstance(error.__cause__, cause)
    assert error.distribution == dist and error.entry_point == f"{name} = {value}"
    # The failure is remembered, reported by origin(), and raised again the same way.
    origin = BACKBONES.origin(name)
    assert origin.loaded is False and origin.error is not None
    assert origin.error.startswith(cause.__name__)
    with pytest.raises(PluginLoadError) as again:
        BACKBONES.get(name)
    assert again.value is error
    # Everything else keeps working.
    assert BACKBONES.build({"NAME": "TinyRes"}).cfg.NAME == "TinyRes"
    assert type(LOSSES.build({"NAME": "L1"})).__name__ == "L1"
    assert name in BACKBONES.names()


def test_a_module_that_exits_at_import_is_a_broken_plugin(vertebra_plugins: PluginSandbox) -> None:
    """SystemExit raised by plugin code at import is isolated and named like an ImportError."""
    dists.add_good(vertebra_plugins)
    dists.add_exit(vertebra_plugins)
    with pytest.raises(PluginLoadError) as info:
        BACKBONES.get("Quitter")
    error = info.value
    assert str(error) == (
        "cannot load backbone 'Quitter' from entry point 'Quitter = vb_exit.parts:Quitter' in "
        "group 'vertebra.backbones' of distribution 'vb-exit 0.1.0': ImportError: importing "
        "'vb_exit.parts' raised SystemExit(3); a module must not exit the process when it is "
        "imported"
    )
    assert error.distribution == "vb-exit"
    assert isinstance(error.__cause__, ImportError)
    assert isinstance(error.__cause__.__cause__, SystemExit)
    assert BACKBONES.origin("Quitter").error is not None
    assert BACKBONES.build({"NAME": "TinyRes"}).cfg.NAME == "TinyRes"


def test_keyboard_interrupt_at_import_passes_through(vertebra_plugins: PluginSandbox) -> None:
    vertebra_plugins.add(
        "vb-interrupt",
        {"vertebra.backbones": {"Stop": "vb_interrupt:Stop"}},
        {"vb_interrupt.py": "raise KeyboardInterrupt\n"},
    )
    with pytest.raises(KeyboardInterrupt):
        BACKBONES.get("Stop")


def test_a_broken_part_in_a_config_is_one_error_among_the_others(
    broken_world: PluginSandbox,
) -> None:
    class Net(PartConfig):
        BACKBONE: BackboneCfg = Field(description="The backbone.")
        HEAD: HeadCfg = Field(description="The head.")

    raw = {
        "NAME": "Net",
        "BACKBONE": {"NAME": "Missing"},
        "HEAD": {"NAME": "LinearHead", "DIMM": 3},
    }
    with pytest.raises(ConfigError) as info:
        validate_tree(Net, raw, path="MODEL")
    missing, *others = info.value.issues
    assert missing.path == "MODEL.BACKBONE.NAME"
    assert missing.message.startswith(
        "cannot load backbone 'Missing' from entry point 'Missing = "
        "vb_missing_attr.parts:NoSuchClass' in group 'vertebra.backbones' of distribution "
        "'vb-missing-attr 0.1.0': AttributeError: "
    )
    assert [str(i) for i in others] == [
        "MODEL.HEAD.NUM_CLASSES: required key is missing: Number of classes",
        "MODEL.HEAD.DIMM: unknown key; did you mean DIM?",
    ]


def test_a_clashing_name_reports_both_origins_and_the_qualified_form_picks_one(
    broken_world: PluginSandbox,
) -> None:
    assert "Twin" in BACKBONES
    with pytest.raises(UnknownPartError) as info:
        BACKBONES.get("Twin")
    assert str(info.value) == (
        "'Twin' in BACKBONES is offered by several distributions: 'vb-clash-a' "
        "(vb_clash_a.parts:Twin), 'vb-clash-b' (vb_clash_b.parts:Twin); name one as "
        "'DISTRIBUTION:Twin', for example 'vb-clash-a:Twin'"
    )
    with pytest.raises(ConfigError) as config_info:
        BACKBONES.build({"NAME": "Twin"})
    assert config_info.value.issues[0].path == "NAME"
    assert loaded_fixture_modules() == []
    assert BACKBONES.build({"NAME": "vb-clash-a:Twin"}).SOURCE == "a"
    assert BACKBONES.get("vb_clash_b:Twin").SOURCE == "b"  # any spelling of the name
    assert loaded_fixture_modules() == [
        "vb_clash_a",
        "vb_clash_a.parts",
        "vb_clash_b",
        "vb_clash_b.parts",
    ]
    assert [(o.distribution, o.version) for o in BACKBONES.origins("Twin")] == [
        ("vb-clash-a", "0.1.0"),
        ("vb-clash-b", "0.2.0"),
    ]
    assert BACKBONES.origin("vb-clash-b:Twin").version == "0.2.0"
    with pytest.raises(UnknownPartError) as info:
        BACKBONES.get("vb-clash-c:Twin")
    assert str(info.value) == (
        "'vb-clash-c:Twin' is not a registered backbone of distribution 'vb-clash-c'; it is "
        "offered as 'vb-clash-a:Twin', 'vb-clash-b:Twin'"
    )


def test_registering_over_an_existing_name_needs_force(broken_world: PluginSandbox) -> None:
    with pytest.raises(RegistrationError) as info:

        @BACKBONES.register_class("TinyRes")
        class Mine(BaseModel):
            pass

    assert str(info.value) == (
        "backbone 'TinyRes' is already registered in BACKBONES (vb_good.parts:TinyRes from "
        "distribution 'vb-good'); pass force=True to replace it"
    )
    assert loaded_fixture_modules() == []

    @BACKBONES.register_class("TinyRes", force=True)
    class Replacement(BaseModel):
        pass

    assert BACKBONES.get("TinyRes") is Replacement
    assert BACKBONES.origin("TinyRes").distribution is None
    assert isinstance(BACKBONES.build({"NAME": "TinyRes"}), Replacement)
    BACKBONES.unregister("TinyRes")
    assert BACKBONES.get("TinyRes").__module__ == "vb_good.parts"

    @BACKBONES.register_class()
    class Local(BaseModel):
        pass

    BACKBONES.register(Local)  # the same class again changes nothing
    with pytest.raises(RegistrationError) as info:
        BACKBONES.register_class("Local")(type("Local", (BaseModel,), {}))
    assert "backbone 'Local' is already registered" in str(info.value)
    assert "registered in this process" in str(info.value)
    origin = BACKBONES.origin("Local")
    assert (origin.distribution, origin.version, origin.loaded) == (None, None, True)
    assert origin.value.endswith(
        ":test_registering_over_an_existing_name_needs_force.<locals>.Local"
    )


def test_registering_checks_the_base_and_the_name() -> None:
    with pytest.raises(RegistrationError) as info:
        BACKBONES.register_class()(type("Plain", (), {}))
    assert str(info.value).startswith("cannot register <class ")
    assert str(info.value).endswith(
        "as backbone 'Plain': BACKBONES takes subclasses of vertebra.model.base_model.BaseModel"
    )
    with pytest.raises(RegistrationError, match="without ':'"):
        BACKBONES.register(type("X", (BaseModel,), {}), "dist:X")
    # LOSSES take any nn.Module, as the seed's CrossEntropy is one.
    LOSSES.register(type("PlainLoss", (nn.Module,), {}))
    assert "PlainLoss" in LOSSES


def test_a_disabled_distribution_is_named_in_the_unknown_name_error(
    vertebra_plugins: PluginSandbox,
) -> None:
    dists.add_good(vertebra_plugins)
    dists.add_clash(vertebra_plugins)
    index = plugins.PluginIndex.scan([str(vertebra_plugins.root), *sys.path], allow=["vb-clash-a"])
    with plugins.use_index(index):
        assert "TinyRes" not in BACKBONES and "TinyRes" not in BACKBONES.names()
        with pytest.raises(UnknownPartError) as info:
            BACKBONES.get("TinyRes")
        assert str(info.value) == (
            "'TinyRes' is not a registered backbone; it is offered by distribution 'vb-good', "
            "which VERTEBRA_PLUGINS does not load (add it to VERTEBRA_PLUGINS or unset the "
            "variable)"
        )
        (origin,) = BACKBONES.origins("TinyRes")
        assert origin.enabled is False and origin.distribution == "vb-good"
        # With one of the twins left out, the bare name is no longer ambiguous.
        assert BACKBONES.get("Twin").SOURCE == "a"
        assert "MLP" in BACKBONES  # the core always loads


def test_a_new_index_drops_what_was_loaded(broken_world: PluginSandbox) -> None:
    first = BACKBONES.get("TinyRes")
    assert BACKBONES.get("TinyRes") is first
    with plugins.use_index(plugins.PluginIndex()):
        assert BACKBONES.names() == []
        with pytest.raises(UnknownPartError) as info:
            BACKBONES.get("TinyRes")
        assert str(info.value) == (
            "'TinyRes' is not a registered backbone; no BACKBONES are registered "
            "(entry-point group 'vertebra.backbones')"
        )
    assert BACKBONES.origin("TinyRes").loaded is False  # forgotten on the swap back
    assert BACKBONES.get("TinyRes").__name__ == "TinyRes"


def test_build_passes_keyword_arguments_to_the_constructor(vertebra_plugins: PluginSandbox) -> None:
    @BACKBONES.register_class()
    class WithExtra(BaseModel):
        def __init__(self, cfg, logger=None, scale: int = 1):  # type: ignore[no-untyped-def]
            super().__init__(cfg, logger)
            self.scale = scale

    assert BACKBONES.build({"NAME": "WithExtra"}, None, scale=3).scale == 3


def test_a_part_without_a_name_or_with_a_bad_one_is_reported(
    vertebra_plugins: PluginSandbox,
) -> None:
    cases = {
        "no name": ({"DEPTH": 2}, "NAME: required key is missing: the name of a head"),
        "a number": ({"NAME": 3}, "NAME: expected the name of a head"),
        "a list": ([1], "expected a mapping with a NAME from HEADS, got list [1]"),
    }
    for raw, start in cases.values():
        with pytest.raises(ConfigError) as info:
            HEADS.validate(raw)
        (issue,) = info.value.issues
        assert str(issue).startswith(start), str(issue)
        assert info.value.source == "HEADS config"
