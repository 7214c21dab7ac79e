"""The rules by which a page's shown output is compared with what a command printed."""

from __future__ import annotations

from .blocks import console
from .matching import in_order, lines, matches


def test_numbers_match_within_the_tolerance_and_integers_exactly() -> None:
    shown = lines("step 23 (epoch 1): validation acc@1 0.8162 over 359 samples")
    assert matches(
        shown, lines("step 23 (epoch 1): validation acc@1 0.7744 over 359 samples"), 0.05
    )
    assert not matches(
        shown, lines("step 23 (epoch 1): validation acc@1 0.7744 over 359 samples"), 0.01
    )
    assert not matches(
        shown, lines("step 23 (epoch 1): validation acc@1 0.8162 over 360 samples"), 0.05
    )
    assert not matches(
        shown, lines("step 23 (epoch 1): validation acc@1 0.7744 over 359 samples"), None
    )


def test_dots_stand_for_any_lines_or_text_and_an_extra_line_fails() -> None:
    shown = lines("a: 3 errors\n...\nbest at ... steps")
    assert matches(shown, lines("a: 3 errors\nx\ny\nbest at 12 steps"), None)
    assert matches(shown, lines("a: 3 errors\nbest at 12 steps"), None)
    errors = lines("2 errors:\n  K: unknown key\n  L: bad")
    assert matches(errors, lines("2 errors:\nK: unknown key\nL: bad"), None)
    assert not matches(errors, lines("2 errors:\nK: missing\nK: unknown key\nL: bad"), None)
    assert in_order(errors, lines("2 errors:\nK: missing\nK: unknown key\nL: bad"), None) == []
    assert in_order(lines("L: bad\nK: unknown key"), lines("K: unknown key\nL: bad"), None) == [
        "K: unknown key"
    ]


def test_console_blocks_split_into_commands_and_what_each_printed() -> None:
    code = "$ vertebra train a.yaml \\\n    --set X=1\nline 1\n\n$ vertebra eval runs/a\nline 2\n"
    assert console(code) == [
        ("vertebra train a.yaml  --set X=1", "line 1\n"),
        ("vertebra eval runs/a", "line 2"),
    ]
