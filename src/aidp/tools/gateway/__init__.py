"""The model gateway: every model request of an attempt passes through aidp.

A :class:`Gateway` is an HTTP/1.1 server on ``127.0.0.1`` and an ephemeral port, run by an
asyncio loop on one daemon thread of the orchestrator's process. For each attempt of a model
tool the engine :meth:`~Gateway.open` s a :class:`Grant` (the real endpoint and key, the
profile's prices and rate limits, the budget check) and gets a :class:`Ticket`: a base URL
(``http://127.0.0.1:PORT/v1``) and a per-attempt token. The tool gets only those two, as its
endpoint and its API key; the token is valid on loopback and only until the attempt is
:meth:`~Gateway.close` d. For each request the gateway

1. finds the attempt by the token (``Authorization: Bearer``; an unknown one gets 401 and is
   never forwarded);
2. refuses it with an OpenAI-shaped 429 naming aidp and the budget when the grant's budget
   check says a budget is spent, and tells the engine (which stops the tool);
3. waits for the profile's shared rate limit (one token bucket per profile for every tool and
   parallel step of the process) and for any ``Retry-After`` the endpoint asked for;
4. forwards it to ``upstream + path`` over a pooled :mod:`httpx` client (no redirects, no
   environment proxies, connect and read timeouts), the tool's credentials replaced by the
   real key; a streamed chat request is asked for its usage (``stream_options``);
5. passes the answer back as it comes (server-sent events chunk by chunk), reading from it the
   usage (the JSON body, the last chat chunk, ``response.completed``) and, for an error, a
   :class:`~aidp.errors.finding.Finding` (status, the body's code, ``Retry-After``);
6. optionally appends the exchange to a JSONL recording, secrets masked.

:meth:`Gateway.close` returns the attempt's :class:`Traffic`: exact usage and cost, request
latency, findings and the budget refusal, if any. Only the gateway ever holds the key.
"""

from aidp.tools.gateway.grant import TOKEN_ENV, Grant, Ticket, Traffic, attach
from aidp.tools.gateway.server import MAX_REQUEST_BYTES, Gateway, shared_gateway
from aidp.tools.model_wire import Price

__all__ = ["MAX_REQUEST_BYTES", "TOKEN_ENV", "Gateway", "Grant", "Price", "Ticket", "Traffic",
           "attach", "shared_gateway"]
