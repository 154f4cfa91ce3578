"""Tests for aidp.tools.registry: adapters by name (built-in and entry points), profile choice."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.config import Settings, ToolProfile
from aidp.exceptions import ToolError
from aidp.tools import registry
from aidp.tools.registry import (
    Choice,
    NoProfileError,
    ProfileHealth,
    choose_profile,
    fallback_chain,
    get_adapter,
    resolve_profile,
)

OPEN = ProfileHealth(breaker_open=True)


def settings(**profiles: dict[str, Any]) -> Settings:
    """Settings holding the given profiles (keyword = profile name, value = its fields)."""
    return Settings(tools={name: ToolProfile(**fields) for name, fields in profiles.items()})


def trio() -> Settings:
    """aider -> codex -> openai, all able to edit code."""
    return settings(
        aider={"adapter": "aider", "capabilities": ["code_edit"], "fallback": ["codex"],
               "priority": 2},
        codex={"adapter": "codex", "capabilities": ["code_edit"], "fallback": ["openai"],
               "priority": 1},
        openai={"adapter": "openai", "capabilities": ["code_edit", "review"]},
    )


# -- adapters ------------------------------------------------------------------------------------


def test_builtin_adapters_are_found_lazily() -> None:
    """The aider and codex adapters come from their modules, one shared instance per name."""
    aider = get_adapter("aider")
    assert aider.name == "aider" and get_adapter("aider") is aider
    assert get_adapter("codex").name == "codex"


def test_missing_builtin_module_is_a_clear_tool_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A built-in whose module is absent raises ToolError naming the adapter and the module."""
    monkeypatch.setitem(registry.BUILTIN_ADAPTER_MODULES, "ghost",
                        ("aidp.tools.adapters.ghost", "GhostAdapter"))
    with pytest.raises(ToolError, match=r"adapter 'ghost' is not available: cannot import "
                                        r"aidp\.tools\.adapters\.ghost"):
        get_adapter("ghost")


def test_unknown_adapter_lists_the_known_ones() -> None:
    """An adapter name nobody provides raises ToolError listing the known names."""
    with pytest.raises(ToolError, match=r"unknown adapter 'nope' \(known: aider, codex, manual"):
        get_adapter("nope")


PLUGIN = '''
class EchoAdapter:
    name = "echo"

    def run(self, invocation):
        raise NotImplementedError

    def probe(self, profile_name, profile, env):
        raise NotImplementedError


class NotAnAdapter:
    pass
'''


def run_with_plugin(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with a tiny installed-looking plugin on PYTHONPATH."""
    (tmp_path / "aidp_echo.py").write_text(PLUGIN)
    dist = tmp_path / "aidp_echo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aidp-echo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [aidp.adapters]
        echo = aidp_echo:EchoAdapter
        hollow = aidp_echo:NotAnAdapter
        broken = aidp_echo_missing:Adapter
        """))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_entry_point_adapter_is_loaded_and_known(tmp_path: Path) -> None:
    """A third-party adapter registered under aidp.adapters is found by name and is known."""
    code = ("from aidp.tools.registry import get_adapter\n"
            "from aidp.config import known_adapters\n"
            "a = get_adapter('echo')\n"
            "print(type(a).__name__, a.name, 'echo' in known_adapters())\n")
    result = run_with_plugin(tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["EchoAdapter", "echo", "True"]


@pytest.mark.parametrize(("name", "message"), [
    ("hollow", "adapter 'hollow' (aidp_echo:NotAnAdapter) has no run() and probe()"),
    ("broken", "adapter 'broken' from entry point aidp_echo_missing:Adapter failed to load: "
               "ModuleNotFoundError"),
], ids=["not-an-adapter", "import-fails"])
def test_bad_entry_point_is_a_tool_error_naming_it(tmp_path: Path, name: str, message: str) -> None:
    """A plugin that fails to load, or is no adapter, raises ToolError attributing the plugin."""
    code = ("from aidp.exceptions import ToolError\n"
            "from aidp.tools.registry import get_adapter\n"
            "try:\n"
            f"    get_adapter({name!r})\n"
            "except ToolError as exc:\n"
            "    print(exc)\n")
    result = run_with_plugin(tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(message)


# -- fallback chains -----------------------------------------------------------------------------


def test_fallback_chain_is_breadth_first_and_cycle_safe() -> None:
    """The chain starts with the profile, lists fallbacks breadth first, each once, cycles cut."""
    config = settings(
        a={"fallback": ["b", "c"]}, b={"fallback": ["d", "a"]}, c={"fallback": ["b"]},
        d={"fallback": ["a"]},
    )
    assert fallback_chain(config, "a") == ["a", "b", "c", "d"]
    assert fallback_chain(config, "d") == ["d", "a", "b", "c"]


NAMES = ["a", "b", "c", "d", "e"]


@given(st.dictionaries(st.sampled_from(NAMES), st.lists(st.sampled_from(NAMES), max_size=4),
                       min_size=1),
       st.dictionaries(st.sampled_from(NAMES), st.booleans()))
def test_choice_and_chains_hold_their_invariants(graph: dict[str, list[str]],
                                                 down: dict[str, bool]) -> None:
    """On any fallback graph: a chain starts with its profile, lists each reachable profile
    once; a choice is a healthy profile of the named one's chain, or a retryable refusal."""
    config = settings(**{name: {"fallback": [f for f in fallbacks if f in graph]}
                         for name, fallbacks in graph.items()})
    health = {name: ProfileHealth(breaker_open=is_down) for name, is_down in down.items()}
    for name in graph:
        chain = fallback_chain(config, name)
        assert chain[0] == name and len(chain) == len(set(chain))
        try:
            choice = choose_profile(config, tool=name, capability=None, health=health)
        except NoProfileError as exc:
            assert exc.retryable and all(down.get(other) for other in chain)
        else:
            assert choice.profile in chain and not down.get(choice.profile)


def test_fallback_chain_of_a_profile_without_fallback_is_itself() -> None:
    """A profile with no fallback has a chain of one; implicit profiles exist too."""
    assert fallback_chain(settings(), "manual") == ["manual"]


def test_implicit_profiles_resolve_and_unknown_ones_raise() -> None:
    """shell and manual exist without being declared; an unknown name raises ToolError."""
    assert resolve_profile(settings(), "manual").adapter == "manual"
    with pytest.raises(ToolError, match="no tool profile named 'aidr'"):
        resolve_profile(settings(), "aidr")


# -- choosing by name ----------------------------------------------------------------------------


def test_named_tool_is_chosen_when_healthy() -> None:
    """A step naming a healthy profile gets it."""
    choice = choose_profile(trio(), tool="codex", capability=None, health={})
    assert choice == Choice("codex", "chose codex (named by the step)", choice.candidates)


def test_open_breakers_move_along_the_fallback_chain() -> None:
    """An open breaker moves to the next healthy profile along fallback, saying why."""
    choice = choose_profile(trio(), tool="aider", capability=None,
                            health={"aider": OPEN, "codex": OPEN})
    assert choice.profile == "openai"
    assert choice.reason == ("aider: breaker open; codex: breaker open; "
                             "chose openai (fallback of codex)")


def test_all_breakers_open_is_a_retryable_no_profile_error() -> None:
    """When every profile of the chain is open, NoProfileError says so and is retryable."""
    with pytest.raises(NoProfileError) as info:
        choose_profile(trio(), tool="codex", capability=None,
                       health={"codex": OPEN, "openai": OPEN})
    assert info.value.retryable
    assert str(info.value) == ("codex: breaker open; openai: breaker open; "
                               "no healthy profile for codex")


def test_unknown_named_tool_raises() -> None:
    """Naming a profile that does not exist raises ToolError."""
    with pytest.raises(ToolError, match="no tool profile named 'gemini'"):
        choose_profile(trio(), tool="gemini", capability=None, health={})


# -- choosing by capability ----------------------------------------------------------------------


def test_capability_picks_the_highest_priority_match() -> None:
    """Among profiles offering the capability, the highest priority wins."""
    choice = choose_profile(trio(), tool=None, capability="code_edit", health={})
    assert choice.profile == "aider"
    assert [name for name, _, _ in choice.candidates] == ["aider", "codex", "openai"]
    assert choice.reason == "chose aider (code_edit, score 2.1)"


def test_capability_wins_over_the_default_tool() -> None:
    """A step asking for a capability gets a match even though its tool defaults to shell."""
    choice = choose_profile(trio(), tool="shell", capability="code_edit", health={})
    assert choice.profile == "aider"


def test_capability_excludes_profiles_without_it() -> None:
    """Only profiles listing the capability are candidates."""
    choice = choose_profile(trio(), tool=None, capability="review", health={})
    assert choice.profile == "openai"
    assert [name for name, _, _ in choice.candidates] == ["openai"]


def test_language_excludes_and_naming_it_scores() -> None:
    """A profile listing other languages is excluded; one naming the language beats "any"."""
    config = settings(
        rusty={"capabilities": ["code_edit"], "languages": ["rust"]},
        py={"capabilities": ["code_edit"], "languages": ["Python"]},
        anything={"capabilities": ["code_edit"]},
    )
    choice = choose_profile(config, tool=None, capability="code_edit", language="python",
                            health={})
    assert choice.profile == "py"
    assert choice.candidates[-1] == ("rusty", None, "languages rust exclude python")
    assert [name for name, score, _ in choice.candidates if score is not None] == ["py", "anything"]


def test_environment_filters_and_scores() -> None:
    """environments restrict where a profile is used; naming the environment scores."""
    config = settings(
        prod_only={"capabilities": ["code_edit"], "environments": ["prod"]},
        ci={"capabilities": ["code_edit"], "environments": ["ci", "dev"]},
        anything={"capabilities": ["code_edit"]},
    )
    choice = choose_profile(config, tool=None, capability="code_edit", environment="ci",
                            health={})
    assert choice.profile == "ci"
    assert ("prod_only", None, "environments prod exclude ci") in choice.candidates


def test_success_rate_breaks_ties() -> None:
    """Between equal matches, the better recent success rate wins; unknown sits in the middle."""
    config = settings(a={"capabilities": ["x"]}, b={"capabilities": ["x"]},
                      c={"capabilities": ["x"]})
    health = {"a": ProfileHealth(success_rate=0.2), "b": ProfileHealth(success_rate=0.9)}
    choice = choose_profile(config, tool=None, capability="x", health=health)
    assert [name for name, _, _ in choice.candidates] == ["b", "c", "a"]
    assert choice.profile == "b"


def test_priority_outweighs_specificity_and_success() -> None:
    """priority decides first: a generic profile of higher priority beats a specific one."""
    config = settings(generic={"capabilities": ["x"], "priority": 1},
                      specific={"capabilities": ["x"], "languages": ["go"]})
    health = {"generic": ProfileHealth(success_rate=0.0),
              "specific": ProfileHealth(success_rate=1.0)}
    choice = choose_profile(config, tool=None, capability="x", language="go", health=health)
    assert choice.profile == "generic"


def test_capability_with_open_breaker_takes_its_fallback_first() -> None:
    """The best match with an open breaker hands over to its own fallback chain."""
    choice = choose_profile(trio(), tool=None, capability="code_edit", health={"aider": OPEN})
    assert choice.profile == "codex"
    assert choice.reason == "aider: breaker open; chose codex (fallback of aider)"


def test_capability_falls_to_the_next_candidate_when_a_chain_is_down() -> None:
    """When a match's whole chain is open, the next candidate (and its chain) is tried."""
    config = settings(
        a={"capabilities": ["x"], "priority": 5, "fallback": ["b"]},
        b={},
        c={"capabilities": ["x"]},
    )
    choice = choose_profile(config, tool=None, capability="x",
                            health={"a": OPEN, "b": OPEN})
    assert choice.profile == "c"
    assert choice.reason == "a: breaker open; b: breaker open; chose c (x, score 0.1)"


def test_no_profile_with_the_capability_is_permanent() -> None:
    """Asking for a capability nobody offers raises a non-retryable NoProfileError."""
    with pytest.raises(NoProfileError, match="no tool profile offers deploy") as info:
        choose_profile(trio(), tool=None, capability="deploy", health={})
    assert not info.value.retryable


def test_neither_tool_nor_capability_raises() -> None:
    """A request naming neither a tool nor a capability is an error."""
    with pytest.raises(ToolError, match="needs a tool or a capability"):
        choose_profile(trio(), tool=None, capability=None, health={})
