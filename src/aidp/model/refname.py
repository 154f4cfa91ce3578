"""Pure-python git ref-name rules (``git check-ref-format``), so plans are checked without git.

The rules follow git's documentation of ``check-ref-format``:

1. no path component may begin with ``.`` or end with ``.lock``;
2. no ``..`` anywhere;
3. no ASCII control character (below 0x20, or DEL), space, ``~``, ``^`` or ``:``;
4. no ``?``, ``*`` or ``[``;
5. must not begin or end with ``/`` nor contain ``//`` (empty components);
6. must not end with ``.``;
7. no ``@{`` sequence;
8. must not be the single character ``@``;
9. no backslash.

Branch names (``git check-ref-format --branch``) also may not begin with ``-`` and may not be
``HEAD``. One-level names (``main``) are accepted, as ``--branch`` and ``--allow-onelevel`` do.
"""

from __future__ import annotations

__all__ = ["check_ref_name", "is_valid_branch_name", "is_valid_ref_name"]

_FORBIDDEN_CHARS = frozenset(" ~^:?*[\\")


def check_ref_name(name: str, *, branch: bool = True) -> str | None:
    """Check ``name`` against git's ref-name rules.

    Args:
        name: the name to check, e.g. ``"feature/login"``.
        branch: apply the extra rules of branch names (no leading ``-``, not ``HEAD``);
            pass ``False`` for a ref such as a workstream's ``base``.

    Returns:
        ``None`` when the name is valid, otherwise a short reason (``"contains '..'"``).
    """
    if not name:
        return "is empty"
    if name == "@":
        return "is '@'"
    if branch and name.startswith("-"):
        return "starts with '-'"
    if branch and name == "HEAD":
        return "'HEAD' is not a branch name"
    for char in name:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return f"contains the control character {char!r}"
        if char in _FORBIDDEN_CHARS:
            return f"contains {char!r}"
    if ".." in name:
        return "contains '..'"
    if "@{" in name:
        return "contains '@{'"
    if name.startswith("/") or name.endswith("/"):
        return "starts or ends with '/'"
    if "//" in name:
        return "contains '//'"
    if name.endswith("."):
        return "ends with '.'"
    for component in name.split("/"):
        if component.startswith("."):
            return f"has a component starting with '.' ({component!r})"
        if component.endswith(".lock"):
            return f"has a component ending with '.lock' ({component!r})"
    return None


def is_valid_branch_name(name: str) -> bool:
    """Return whether ``git check-ref-format --branch name`` would accept ``name``."""
    return check_ref_name(name, branch=True) is None


def is_valid_ref_name(name: str) -> bool:
    """Return whether ``name`` is a valid (possibly one-level) ref name such as ``HEAD``."""
    return check_ref_name(name, branch=False) is None
