"""`vertebra.state_dicts.mismatches`: what keeps stored tensors from fitting a module."""

from __future__ import annotations

from vertebra.state_dicts import mismatches


def test_tensors_that_fit_give_no_message() -> None:
    own = {"fc.weight": (4, 8), "fc.bias": (4,)}
    assert mismatches(own, dict(own)) == []


def test_each_kind_is_counted_and_named_in_the_module_order() -> None:
    own = {"a.weight": (2, 2), "b.weight": (3,), "c.weight": (1,)}
    stored = {"z.weight": (1,), "b.weight": (4,), "a.weight": (2, 2)}
    assert mismatches(own, stored, "the checkpoint") == [
        "1 missing from the checkpoint: c.weight",
        "1 not in the model: z.weight",
        "1 shape differs: b.weight (4,) in the checkpoint, (3,) in the model",
    ]


def test_long_lists_are_cut_with_a_count() -> None:
    own = {f"layer{i}.weight": (1,) for i in range(8)}
    (message,) = mismatches(own, {})
    assert message == (
        "8 missing from the file: layer0.weight, layer1.weight, layer2.weight, "
        "layer3.weight, layer4.weight (and 3 more)"
    )


def test_optional_names_may_be_absent() -> None:
    own = {"embed.weight": (10, 4), "head.weight": (10, 4)}
    stored = {"embed.weight": (10, 4)}
    assert mismatches(own, stored, optional={"head.weight"}) == []
    assert mismatches(own, stored) == ["1 missing from the file: head.weight"]
