"""The dashboard's rendering rules, without a server: terminal output is inert HTML, filters
format times and money, templates autoescape, ``next`` stays on the site."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.web.ansi import ansi_to_html, strip_ansi
from aidp.web.render import ago, duration, environment, money
from aidp.web.session import safe_next

ESC = "\x1b"


@pytest.mark.parametrize(("raw", "html"), [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ('<img src=x onerror="alert(2)">', "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;"),
    (f"{ESC}[31mred{ESC}[0m plain", '<span class="ansi-fg-1">red</span> plain'),
    (f"{ESC}[1;92mok{ESC}[22m!", '<span class="ansi-bold ansi-fg-10">ok</span>'
                                  '<span class="ansi-fg-10">!</span>'),
    (f"{ESC}[44;37m<b>{ESC}[m", '<span class="ansi-fg-7 ansi-bg-4">&lt;b&gt;</span>'),
    (f"{ESC}[38;5;196mx{ESC}[0m", "x"),
    (f"{ESC}]0;window title{ESC}\\text", "text"),
    (f"{ESC}]8;;http://evil.example{ESC}\\link{ESC}]8;;{ESC}\\", "link"),
    (f"a{ESC}[2J{ESC}[Hb{ESC}[?25l", "ab"),
    ("tab\tnew\nline\r\x00\x07", "tab\tnew\nline"),
], ids=["script", "img-onerror", "red", "bold-bright", "background-markup", "256-colour",
        "osc-title", "osc-hyperlink", "cursor-moves", "controls"])
def test_ansi_renders_colours_as_classes_and_everything_else_inert(raw: str, html: str) -> None:
    """SGR colours become ansi-* classes; markup is escaped; other escapes and controls go."""
    assert str(ansi_to_html(raw)) == html


@given(st.text(alphabet=st.sampled_from(list("<>&\"'ab;[]0123456789m\x1b\x07\n\x9b"))
               | st.characters(), max_size=200))
def test_ansi_output_holds_no_markup_but_its_own_spans(raw: str) -> None:
    """Whatever the input, the only tags in the output are ansi spans; no escape survives."""
    out = str(ansi_to_html(raw))
    tags = re.findall(r"<[^>]*>", out)
    assert all(re.fullmatch(r'<span class="(ansi-[a-z0-9-]+ ?)+">|</span>', t) for t in tags)
    assert "\x1b" not in out and "\x9b" not in out
    assert ESC not in strip_ansi(raw)


def test_templates_autoescape_everything() -> None:
    """A value in any template is escaped, whatever the template's name."""
    env = environment()
    for name in ("x.html", "x.txt", "x"):
        assert env.from_string("{{ v }}").render(v="<i>") == "&lt;i&gt;", name


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0.42, "0.4 s"), (42, "42 s"), (62, "1 min 2 s"), (3600, "1 h"),
    (3725, "1 h 2 min"), (90000, "1 d 1 h"),
])
def test_duration_reads_like_a_person_would_say_it(seconds: float | None, text: str) -> None:
    """Durations are short and in the largest sensible units."""
    assert duration(seconds) == text


def test_ago_and_money() -> None:
    """``ago`` is relative to now; ``money`` keeps four digits below a cent."""
    assert ago(None) == "-"
    assert ago(100.0, now=100.5) == "just now"
    assert ago(100.0, now=280.0) == "3 min ago"
    assert money(None) == "-" and money(0) == "$0.00"
    assert money(0.0042) == "$0.0042" and money(1234.5) == "$1,234.50"


@pytest.mark.parametrize(("value", "safe"), [
    ("/runs/01ABC?x=1", "/runs/01ABC?x=1"), (None, "/runs"), ("", "/runs"),
    ("//evil.example/x", "/runs"), ("https://evil.example/", "/runs"),
    ("/\\evil.example", "/runs"), ("javascript:alert(1)", "/runs"), ("runs", "/runs"),
    ("/runs\r\nSet-Cookie: x=1", "/runs"), ("/runs\x00", "/runs"),
])
def test_next_after_sign_in_stays_on_the_site(value: str | None, safe: str) -> None:
    """Only a local path is followed after sign-in (no open redirect)."""
    assert safe_next(value) == safe
