"""What one attempt gets from the model gateway and what it gives back: the :class:`Grant`
(endpoint, key, limits, budget check, recording or replay), the :class:`Ticket` the tool holds
(the gateway's address and a per-attempt token) and the :class:`Traffic` it made, plus
:func:`attach`, which turns a tool profile and environment into the routed ones."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aidp.config import RateLimit, ToolProfile
from aidp.errors.finding import Finding
from aidp.tools.adapter import Usage
from aidp.tools.model_wire import Price

__all__ = ["READ_TIMEOUT_S", "TOKEN_ENV", "Grant", "Live", "Ticket", "Traffic", "attach"]

#: The environment variable a tool finds its per-attempt token in (as its API key).
TOKEN_ENV = "AIDP_MODEL_TOKEN"
#: Seconds between two bytes of an answer before the gateway gives up on it.
READ_TIMEOUT_S = 600.0


#: Another open attempt's tags and its usage so far.
Live = tuple[tuple[str, ...], Usage]


@dataclass(frozen=True)
class Grant:
    """What one attempt may do through the gateway.

    ``budget(usage, others)`` is asked before each model request with the attempt's usage so
    far and the live usage of the other attempts open in the gateway (each with its ``tags``)
    and answers why no more may be spent (None: go on); ``on_refused(reason)`` is called once,
    at the first refusal (the engine stops the tool). ``tags`` say whose attempt this is (the
    engine's: run, workstream, step, profile). ``record`` is a JSONL file the exchanges are
    appended to, ``mask`` the values never written there.
    """

    upstream: str
    key: str | None
    profile: str
    rate_limit: Any = None  # the profile's RateLimit (None: unlimited), this process's bucket
    #: Or a shared bucket (``try_acquire(tokens) -> seconds to wait``, ``settle(extra)``), e.g.
    #: in the store: then every process on it shares the profile's limit.
    limiter: Any = None
    #: A ``Retry-After`` shared beyond this process (``hold(upstream, seconds)``,
    #: ``wait_s(upstream)``), e.g. in the store; None: this process only.
    holds: Any = None
    price: Price | None = None
    budget: Callable[[Usage, Sequence[Live]], str | None] | None = None
    tags: tuple[str, ...] = ()
    on_refused: Callable[[str], None] | None = None
    record: Path | None = None
    mask: Sequence[str] = ()
    read_timeout_s: float = READ_TIMEOUT_S
    #: Recorded exchanges (the JSON objects of a recording, ``docs/gateway.md``): the gateway
    #: answers the model requests with them, in order, and sends nothing upstream (``aidp
    #: replay``); a request the recording does not hold gets 409 and a ``replay_mismatch``
    #: finding.
    replay: Sequence[Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class Ticket:
    """The endpoint and key a tool gets for one attempt."""

    base_url: str
    token: str


@dataclass
class Traffic:
    """What one attempt's requests did (exact, from the provider's answers)."""

    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    refused: str | None = None
    exchanges: int = 0


def attach(ticket: Ticket, profile: ToolProfile, env: Mapping[str, str], key: str | None
           ) -> tuple[ToolProfile, dict[str, str]]:
    """The profile and environment a tool gets for an attempt through the gateway: its
    address as ``base_url``, the attempt token as the key (in :data:`TOKEN_ENV`), no variable
    holding ``key``, and no rate limit of its own (the gateway applies the profile's)."""
    routed = profile.model_copy(update={
        "base_url": ticket.base_url, "api_key_env": TOKEN_ENV, "rate_limit": RateLimit()})
    tool_env = {name: value for name, value in env.items() if not key or value != key}
    tool_env[TOKEN_ENV] = ticket.token
    return routed, tool_env
