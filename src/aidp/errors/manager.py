"""The detector manager: built-in detectors plus plugins from entry points, run one by one.

A detector is a pluggy plugin (see :mod:`aidp.errors.hookspecs`). Third-party detectors are
found through the entry-point group :data:`ENTRY_POINT_GROUP` (``aidp.detectors``). The manager
calls every hook implementation **separately**, not through pluggy's hook caller: a detector
that raises (or cannot be loaded, or returns something that is not a list of findings) is
reported as a :class:`DetectorFailure` and skipped, and every other detector's findings still
come back.

Findings are deduplicated by fingerprint (the first one wins) and keep the detectors' calling
order: the built-ins in :data:`aidp.errors.detectors.BUILTIN` order, then plugins by entry-point
name. Importing this module imports no detector and no pluggy; :func:`default_manager` builds
the manager once per process, thread-safely.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aidp.errors.classify import classify, retry_after
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "ENTRY_POINT_GROUP",
    "Detection",
    "DetectorFailure",
    "DetectorManager",
    "default_manager",
]

ENTRY_POINT_GROUP = "aidp.detectors"


@dataclass(frozen=True)
class DetectorFailure:
    """A detector that could not do its job: it raised, could not be loaded, or returned
    something other than a list of findings. ``message`` says what happened
    (``ExceptionType: text`` for an exception)."""

    detector: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"detector": self.detector, "message": self.message}


@dataclass(frozen=True)
class Detection:
    """What the detectors made of one attempt or check: the findings, deduplicated by
    fingerprint in calling order, and the detectors that failed."""

    findings: tuple[Finding, ...] = ()
    failures: tuple[DetectorFailure, ...] = ()

    @property
    def failure_class(self) -> FailureClass:
        """:func:`aidp.errors.classify` of the findings (UNKNOWN when there are none)."""
        return classify(self.findings)

    @property
    def retry_after(self) -> float | None:
        """:func:`aidp.errors.retry_after` of the findings: the longest wait asked, seconds."""
        return retry_after(self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings],
                "failures": [f.to_dict() for f in self.failures],
                "class": self.failure_class.value, "retry_after": self.retry_after}


def _same(value: object) -> object:
    return value


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class DetectorManager:
    """Holds the detectors and runs them over evidence.

    Args:
        builtins: detector name -> module path of the built-ins to register (default: all of
            :data:`aidp.errors.detectors.BUILTIN`).
        entry_points: whether to load plugins from :data:`ENTRY_POINT_GROUP`.
        plugins: extra detector objects (name -> module or object with hookimpls), registered
            after the built-ins; handy for an application's own detectors and for tests.
    """

    def __init__(
        self,
        builtins: Mapping[str, str] | None = None,
        *,
        entry_points: bool = True,
        plugins: Mapping[str, object] | None = None,
    ) -> None:
        import pluggy

        from aidp.errors import hookspecs
        from aidp.errors.detectors import BUILTIN

        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._order: list[str] = []
        self._load_failures: list[DetectorFailure] = []
        for name, module in (BUILTIN if builtins is None else builtins).items():
            self._register(name, functools.partial(importlib.import_module, module))
        for name, plugin in (plugins or {}).items():
            self._register(name, functools.partial(_same, plugin))
        if entry_points:
            self._load_entry_points()

    # -- registration ------------------------------------------------------------------------

    def _register(self, name: str, load: Callable[[], object]) -> None:
        try:
            plugin = load()
            if self._pm.has_plugin(name):
                raise ValueError(f"a detector named {name!r} is already registered")
            self._pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 -- plugin boundary: a broken plugin is reported
            self._load_failures.append(DetectorFailure(name, f"not loaded: {_describe(exc)}"))
            return
        self._order.append(name)

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        try:
            found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        except Exception as exc:  # noqa: BLE001 -- a corrupt distribution must not stop us
            self._load_failures.append(DetectorFailure(ENTRY_POINT_GROUP, _describe(exc)))
            return
        seen: set[str] = set()
        for ep in found:
            if ep.name in seen:  # the same distribution reachable twice on sys.path
                continue
            seen.add(ep.name)
            self._register(ep.name, ep.load)

    # -- queries -----------------------------------------------------------------------------

    @property
    def detectors(self) -> tuple[str, ...]:
        """The names of the registered detectors, in calling order."""
        return tuple(self._order)

    @property
    def load_failures(self) -> tuple[DetectorFailure, ...]:
        """Detectors that could not be registered (also reported in every :class:`Detection`)."""
        return tuple(self._load_failures)

    # -- running -----------------------------------------------------------------------------

    def detect_attempt(self, evidence: AttemptEvidence) -> Detection:
        """Run every ``aidp_detect_attempt`` implementation over one attempt's evidence."""
        return self._run("aidp_detect_attempt", evidence)

    def detect_check(self, evidence: CheckEvidence) -> Detection:
        """Run every ``aidp_detect_check`` implementation over one failed check's evidence."""
        return self._run("aidp_detect_check", evidence)

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        caller = getattr(self._pm.hook, hook_name)
        rank = {name: index for index, name in enumerate(self._order)}
        impls: list[pluggy.HookImpl] = caller.get_hookimpls()
        # pluggy orders by tryfirst/trylast and registration; ours is the registration order
        return sorted(impls, key=lambda impl: rank.get(impl.plugin_name, len(rank)))

    def _run(self, hook_name: str, evidence: AttemptEvidence | CheckEvidence) -> Detection:
        findings: dict[str, Finding] = {}
        failures = list(self._load_failures)
        for impl in self._impls(hook_name):
            name = impl.plugin_name
            if impl.wrapper or impl.hookwrapper:
                failures.append(DetectorFailure(name, "hook wrappers are not supported"))
                continue
            try:
                result = impl.function(**{arg: evidence for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001 -- plugin boundary: one crash hides no other
                failures.append(DetectorFailure(name, f"{hook_name} raised {_describe(exc)}"))
                continue
            accepted, problem = _accept(result)
            if problem is not None:
                failures.append(DetectorFailure(name, f"{hook_name} {problem}"))
            for finding in accepted:
                findings.setdefault(finding.fingerprint, finding)
        return Detection(tuple(findings.values()), tuple(failures))


def _accept(result: Any) -> tuple[list[Finding], str | None]:
    """The findings in a detector's return value, and what was wrong with it (or None)."""
    if result is None:
        return [], None
    if not isinstance(result, Iterable) or isinstance(result, (str, bytes, Mapping)):
        return [], f"returned {type(result).__name__}, not a list of findings"
    items = list(result)
    good = [item for item in items if isinstance(item, Finding)]
    if len(good) < len(items):
        bad = next(item for item in items if not isinstance(item, Finding))
        return good, f"returned a {type(bad).__name__} among its findings (ignored)"
    return good, None


_default: DetectorManager | None = None
_default_lock = threading.Lock()


def default_manager() -> DetectorManager:
    """The process's manager: all built-ins plus the entry-point plugins, built on first use.

    Thread-safe; later calls return the same object (plugins installed after the first call
    are seen by the next process).
    """
    global _default
    manager = _default
    if manager is None:
        with _default_lock:
            if _default is None:
                _default = DetectorManager()
            manager = _default
    return manager
