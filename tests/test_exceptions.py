"""The exception tree drawn in aidp.exceptions is the whole tree, with the right exit codes."""

from __future__ import annotations

import importlib
import pkgutil
import re

import aidp
from aidp.exceptions import AidpError


def _all_subclasses(cls: type[AidpError]) -> list[type[AidpError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


def test_every_error_class_is_drawn_with_its_exit_code() -> None:
    """Every public AidpError subclass of aidp appears in the drawn tree, under its parent,
    with the exit code it really has."""
    for info in pkgutil.walk_packages(aidp.__path__, "aidp."):
        if ".migrations" not in info.name:
            importlib.import_module(info.name)
    doc = importlib.import_module("aidp.exceptions").__doc__ or ""
    drawn = {m["name"]: (len(m["indent"]), int(m["code"])) for m in re.finditer(
        r"^(?P<indent>[ |]*)(?:\+-- )?(?P<name>\w+Error|\w+Refused|\w+Transition)\s+exit "
        r"(?P<code>\d+)", doc, re.MULTILINE)}
    classes = [AidpError, *_all_subclasses(AidpError)]
    public = [c for c in classes if not c.__name__.startswith("_")]
    missing = [c.__name__ for c in public if c.__name__ not in drawn]
    assert missing == [], f"draw these in aidp.exceptions: {missing}"
    for cls in public:
        depth, code = drawn[cls.__name__]
        assert code == cls.exit_code, f"{cls.__name__}: drawn exit {code}, is {cls.exit_code}"
        parent = cls.__mro__[1]
        if parent is not AidpError and issubclass(parent, AidpError):
            assert drawn[parent.__name__][0] < depth, f"{cls.__name__} not under {parent}"
