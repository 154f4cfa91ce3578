"""Prompt templates of the OpenAI adapter: built-in Markdown files a repository can override.

The adapter sends two messages: a *system* message (``system.md``, with ``$edit_format``
replaced by ``format-diff.md`` or ``format-whole.md``) and a *user* message (``step.md``, with
``$fix`` replaced by ``fix.md`` on a fix attempt, else by nothing). The built-in templates live in
``aidp/tools/templates/``; a file of the same name in ``<repo>/.aidp/templates/`` replaces one
(``<repo>`` is the repository aidp runs on, not the worktree).

Placeholders use :class:`string.Template` syntax (``$name`` or ``${name}``; ``$$`` is a literal
dollar sign). An unknown placeholder is an error naming the template file:

=================  =========================================================================
template           placeholders
=================  =========================================================================
``system.md``      ``$scope`` (the scope globs), ``$edit_format`` (the format's rules)
``format-*.md``    none
``step.md``        ``$prompt`` (the step's prompt), ``$files`` (path + fenced content of
                   each file in scope), ``$context`` (read-only context files, e.g. specs),
                   ``$fix`` (the rendered ``fix.md``, or empty)
``fix.md``         ``$findings`` (one ``- ...`` line per finding of the previous attempt)
=================  =========================================================================

File contents are capped (:data:`MAX_FILE_BYTES` per file, :data:`MAX_TOTAL_BYTES` in all);
files over the caps, binary and non-UTF-8 files are listed by path only.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aidp.errors.finding import Finding
from aidp.exceptions import ToolError

__all__ = [
    "BUILTIN_DIR",
    "MAX_FILE_BYTES",
    "MAX_TOTAL_BYTES",
    "OVERRIDE_DIR",
    "TEMPLATE_NAMES",
    "PromptFile",
    "build_messages",
    "load_template",
    "read_files",
    "render_files",
    "render_findings",
]

BUILTIN_DIR = Path(__file__).parent / "templates"
#: Where a repository's own templates live, relative to its root.
OVERRIDE_DIR = Path(".aidp") / "templates"
TEMPLATE_NAMES = ("system", "step", "fix", "format-diff", "format-whole")
MAX_FILE_BYTES = 256 * 2**10
MAX_TOTAL_BYTES = 1 * 2**20


@dataclass(frozen=True)
class PromptFile:
    """A file shown to the model: ``text`` None when it is listed by path only (``note``
    says why)."""

    path: str
    text: str | None
    note: str = ""


def load_template(name: str, repo: Path | None = None) -> tuple[str, Path]:
    """The text of template ``name`` and the file it came from (the repository's override if
    present, else the built-in one). Raises ToolError if it cannot be read."""
    if name not in TEMPLATE_NAMES:
        raise ValueError(f"unknown template {name!r}")
    candidates = [repo / OVERRIDE_DIR / f"{name}.md"] if repo is not None else []
    candidates.append(BUILTIN_DIR / f"{name}.md")
    for path in candidates:
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8"), path
            except (OSError, UnicodeDecodeError) as exc:
                raise ToolError(f"template {path}: cannot read: {exc}") from exc
    raise ToolError(f"template {name}.md not found")


def _render(name: str, repo: Path | None, values: dict[str, str]) -> str:
    text, path = load_template(name, repo)
    try:
        return string.Template(text).substitute(values)
    except KeyError as exc:
        known = ", ".join(f"${key}" for key in sorted(values)) or "none"
        raise ToolError(f"template {path}: unknown placeholder ${exc.args[0]} "
                        f"(known: {known})") from exc
    except ValueError as exc:  # "Invalid placeholder in string: line 3, col 5"
        raise ToolError(f"template {path}: {exc} (write $$ for a dollar sign)") from exc


def read_files(root: Path, paths: Sequence[str | Path], *,
               max_file_bytes: int = MAX_FILE_BYTES,
               max_total_bytes: int = MAX_TOTAL_BYTES) -> list[PromptFile]:
    """Read ``paths`` (relative to ``root``, or absolute) for the prompt, within the caps."""
    files: list[PromptFile] = []
    total = 0
    for entry in paths:
        target = Path(entry) if Path(entry).is_absolute() else root / entry
        try:
            shown = target.relative_to(root).as_posix()
        except ValueError:
            shown = str(entry)
        try:
            size = target.stat().st_size
        except OSError:
            files.append(PromptFile(shown, None, "missing"))
            continue
        if size > max_file_bytes or total + size > max_total_bytes:
            files.append(PromptFile(shown, None, f"{size} bytes, over the prompt size limit"))
            continue
        try:
            data = target.read_bytes()
            text = data.decode("utf-8")
        except OSError:
            files.append(PromptFile(shown, None, "unreadable"))
            continue
        except UnicodeDecodeError:
            files.append(PromptFile(shown, None, "binary"))
            continue
        if "\x00" in text:
            files.append(PromptFile(shown, None, "binary"))
            continue
        total += size
        files.append(PromptFile(shown, text))
    return files


def _fence_for(text: str) -> str:
    longest = 0
    run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def render_files(files: Sequence[PromptFile]) -> str:
    """Each file as its path line and a fenced block (a fence longer than any backtick run in
    it); files without text as ``path (note)``. ``(none)`` for no files."""
    if not files:
        return "(none)"
    parts: list[str] = []
    for file in files:
        if file.text is None:
            parts.append(f"{file.path} ({file.note}; not shown)")
            continue
        fence = _fence_for(file.text)
        body = file.text if file.text.endswith("\n") or not file.text else file.text + "\n"
        parts.append(f"{file.path}\n{fence}\n{body}{fence}")
    return "\n\n".join(parts)


def render_findings(findings: Sequence[Finding]) -> str:
    """One ``- [code] file:line: message`` line per finding."""
    lines = []
    for finding in findings:
        where = finding.file or ""
        if where and finding.line is not None:
            where += f":{finding.line}"
        code = f"[{finding.code}] " if finding.code else ""
        lines.append(f"- {code}{where + ': ' if where else ''}{finding.message}")
    return "\n".join(lines) or "(none)"


def build_messages(*, prompt: str, files: Sequence[PromptFile],
                   context: Sequence[PromptFile] = (), findings: Sequence[Finding] = (),
                   scope: Sequence[str] = (), edit_format: str = "diff",
                   repo: Path | None = None) -> list[dict[str, str]]:
    """The system and user messages of one attempt, from the (possibly overridden) templates.

    Raises:
        ToolError: a template cannot be read or has an unknown or invalid placeholder.
    """
    rules = _render(f"format-{'whole' if edit_format == 'whole' else 'diff'}", repo, {})
    system = _render("system", repo, {
        "scope": ", ".join(scope) if scope else "(the whole repository)",
        "edit_format": rules.strip(),
    })
    fix = _render("fix", repo, {"findings": render_findings(findings)}) if findings else ""
    user = _render("step", repo, {
        "prompt": prompt.strip(), "files": render_files(files),
        "context": render_files(context), "fix": fix,
    })
    return [{"role": "system", "content": system.strip() + "\n"},
            {"role": "user", "content": user.strip() + "\n"}]
