"""Registries over real fixture distributions: names, building, broken plugins, conflicts."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest
from pydantic import Field
from torch import nn
from vertebra import plugins
from vertebra.errors import (
    ConfigError,
    PluginLoadError,
    RegistrationError,
    RegistrationWarning,
    UnknownPartError,
)
from vertebra.model.base_model import BaseModel
from vertebra.model.registry import BACKBONES, HEADS, LOSSES, METRICS
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


def test_registering_an_installed_name_shadows_it_with_one_warning(
    broken_world: PluginSandbox,
) -> None:
    with pytest.warns(RegistrationWarning) as caught:

        @BACKBONES.register_class("TinyRes")
        class Mine(BaseModel):
            pass

    assert len(caught) == 1
    assert str(caught[0].message) == (
        "backbone 'TinyRes' registered in this process (class "
        f"{__name__}:test_registering_an_installed_name_shadows_it_with_one_warning.<locals>.Mine)"
        " shadows vb_good.parts:TinyRes from distribution 'vb-good 1.2.3' in this process: "
        "configs that name 'TinyRes' build the new one ('vb-good:TinyRes' still names the "
        "installed one)"
    )
    assert caught[0].filename == __file__  # the warning points at the user's registration
    assert loaded_fixture_modules() == []
    assert BACKBONES.get("TinyRes") is Mine
    assert BACKBONES.origin("TinyRes").distribution is None
    assert isinstance(BACKBONES.build({"NAME": "TinyRes"}), Mine)
    assert BACKBONES.get("vb-good:TinyRes").__module__ == "vb_good.parts"  # still reachable
    BACKBONES.unregister("TinyRes")
    assert BACKBONES.get("TinyRes").__module__ == "vb_good.parts"


def test_registering_a_name_again_replaces_it_with_a_warning_as_scepter_does() -> None:
    @BACKBONES.register_class()
    class Local(BaseModel):
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BACKBONES.register(Local)  # the same class again changes nothing, silently
    second = type("Local", (BaseModel,), {"__module__": "notebook"})
    with pytest.warns(RegistrationWarning) as caught:
        BACKBONES.register_class("Local")(second)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(
        "backbone 'Local' registered in this process (class notebook:Local) replaces "
    )
    assert message.endswith(
        "test_registering_a_name_again_replaces_it_with_a_warning_as_scepter_does.<locals>"
        ".Local, registered earlier in this process"
    )
    assert BACKBONES.get("Local") is second
    origin = BACKBONES.origin("Local")
    assert (origin.distribution, origin.version, origin.loaded) == (None, None, True)
    assert origin.value == "notebook:Local"
    # force=True says the replacement is meant: no warning.
    third = type("Local", (BaseModel,), {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BACKBONES.register(third, force=True)
    assert BACKBONES.get("Local") is third


def test_a_name_two_distributions_offer_stays_an_error_and_a_registration_shadows_both(
    broken_world: PluginSandbox,
) -> None:
    with pytest.raises(UnknownPartError, match="offered by several distributions"):
        BACKBONES.get("Twin")
    with pytest.warns(RegistrationWarning) as caught:
        BACKBONES.register_class("Twin")(type("Twin", (BaseModel,), {"__module__": "mine"}))
    assert len(caught) == 1
    assert (
        "shadows vb_clash_a.parts:Twin from distribution 'vb-clash-a 0.1.0', "
        "vb_clash_b.parts:Twin from distribution 'vb-clash-b 0.2.0' in this process"
    ) in str(caught[0].message)
    assert BACKBONES.get("Twin").__module__ == "mine"
    assert BACKBONES.get("vb-clash-b:Twin").SOURCE == "b"


def test_an_entry_points_own_class_imported_is_no_new_registration(
    broken_world: PluginSandbox,
) -> None:
    import importlib

    module = importlib.import_module("vb_good.parts")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BACKBONES.register_class("TinyRes")(module.TinyRes)
    assert BACKBONES.origin("TinyRes").distribution == "vb-good"


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


def test_build_merges_keyword_arguments_named_like_keys_into_the_config(
    broken_world: PluginSandbox,
) -> None:
    # As scepter's build_from_config: the keyword arguments join the config, before it is
    # validated; those that are no key of the part's schema go to the constructor.
    model = BACKBONES.build({"NAME": "TinyRes", "DEPTH": 1}, None, DEPTH=3, WIDTH=4)
    assert (model.cfg.DEPTH, model.cfg.WIDTH, len(model.blocks)) == (3, 4, 3)
    assert model.cfg.model_fields_set == {"NAME", "DEPTH", "WIDTH"}
    validated = BACKBONES.validate({"NAME": "TinyRes", "WIDTH": 2})
    again = BACKBONES.build(validated, WIDTH=6)
    assert (again.cfg.WIDTH, validated.WIDTH) == (6, 2)  # the given config is left as it was
    with pytest.raises(ConfigError) as info:
        BACKBONES.build({"NAME": "TinyRes"}, DEPTH=0)
    assert str(info.value.issues[0]).startswith("DEPTH: Input should be greater than or equal")
    with pytest.raises(TypeError, match="unexpected keyword argument 'depth'"):
        BACKBONES.build({"NAME": "TinyRes"}, depth=3)  # keys are upper case


def test_get_config_template_is_what_vertebra_template_prints(
    broken_world: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    from vertebra.cli import main

    assert main(["template", "heads", "LinearHead"]) == 0
    assert HEADS.get_config_template("LinearHead") == capsys.readouterr().out
    assert "NUM_CLASSES: ???" in HEADS.get_config_template("LinearHead")


# -- factory functions (scepter's register_function) -------------------------------------------


def test_register_function_schema_from_its_signature() -> None:
    @BACKBONES.register_function("Stack")
    def make_stack(depth: int = 2, width: int = 4, logger=None):  # type: ignore[no-untyped-def]
        """A stack of linear layers, made by a function."""
        model = TinyNet(width, depth)
        model.made_with = (depth, width, logger)
        return model

    assert "Stack" in BACKBONES and BACKBONES.get("Stack") is make_stack
    schema = BACKBONES.schema("Stack")
    assert _own_keys(schema) == ["NAME", "DEPTH", "WIDTH"]
    assert schema.model_fields["DEPTH"].description == "Argument `depth` of make_stack()."
    logger = logging.getLogger("factory")
    model = BACKBONES.build({"NAME": "Stack", "DEPTH": 3}, logger)
    assert model.made_with == (3, 4, logger)
    assert BACKBONES.build({"NAME": "Stack"}, None, WIDTH=8).made_with[1] == 8
    with pytest.raises(ConfigError, match=r"DEPTHH: unknown key; did you mean DEPTH\?"):
        BACKBONES.build({"NAME": "Stack", "DEPTHH": 3})
    template = BACKBONES.get_config_template("Stack")
    assert "# A stack of linear layers, made by a function." in template
    assert "DEPTH: 2" in template and "WIDTH: 4" in template


def test_register_function_written_as_scepter_writes_it() -> None:
    # scepter calls a registered function as it calls a class: func(cfg, logger=logger).
    def ScepterStack(cfg, logger=None):  # type: ignore[no-untyped-def]
        return TinyNet(cfg.get("WIDTH", 4), cfg.get("DEPTH", 2))

    ScepterStack.para_dict = {  # type: ignore[attr-defined]
        "DEPTH": {"value": 2, "description": "Number of layers."},
        "WIDTH": {"value": 4, "description": "Width of each layer."},
    }
    BACKBONES.register_function()(ScepterStack)
    model = BACKBONES.build({"NAME": "ScepterStack", "DEPTH": 5})
    assert len(model.layers) == 5
    assert BACKBONES.schema("ScepterStack").model_fields["WIDTH"].description == (
        "Width of each layer."
    )
    # Without a para_dict, a function that takes `cfg` takes NAME alone.
    BACKBONES.register_function("Plain")(_plain_factory)
    assert _own_keys(BACKBONES.schema("Plain")) == ["NAME"]
    assert len(BACKBONES.build({"NAME": "Plain"}).layers) == 1


def _plain_factory(cfg, logger=None):  # type: ignore[no-untyped-def]
    return TinyNet(2, 1)


def test_a_factory_must_return_the_registrys_kind_of_part() -> None:
    @BACKBONES.register_function()
    def not_a_model():  # type: ignore[no-untyped-def]
        return {"weight": 1}

    with pytest.raises(RegistrationError) as info:
        BACKBONES.build({"NAME": "not_a_model"})
    assert str(info.value).endswith(
        "returned builtins.dict, not a vertebra.model.base_model.BaseModel (what BACKBONES holds)"
    )
    # Any nn.Module is made a part (tests/core/test_scepter_port.py); a metric is no module.
    METRICS.register_function("linear_metric")(lambda: nn.Linear(2, 2))
    with pytest.raises(
        RegistrationError, match=r"returned torch\.nn\.modules\.linear\.Linear, not"
    ):
        METRICS.build({"NAME": "linear_metric"})
    with pytest.raises(RegistrationError, match="register_function: it takes a function"):
        BACKBONES.register_function("Cls")(TinyNet)  # type: ignore[type-var]


class TinyNet(BaseModel):
    def __init__(self, width: int, depth: int) -> None:
        super().__init__(PartConfig(NAME="TinyNet"))
        self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])


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


def _own_keys(schema: type) -> list[str]:
    """A schema's keys without the WEIGHTS keys every part config has."""
    from vertebra.config._schema import WEIGHTS_KEYS

    return [k for k in schema.model_fields if k not in WEIGHTS_KEYS]  # type: ignore[attr-defined]
