"""The sender's pure parts: the cursor over the journal's id gaps, and the backoff."""

from __future__ import annotations

import random

from aidp.app.webhook_sender import advance, backoff
from aidp.config import WebhookSettings


def test_cursor_waits_at_a_young_gap_and_passes_an_old_one() -> None:
    assert advance(3, [(4, 100.0), (5, 100.0)], now=101.0, horizon=10) == (5, False)
    # id 6 not visible yet, 7 committed 1 s ago: 6 may still commit -> stay at 5
    assert advance(3, [(4, 100.0), (5, 100.0), (7, 100.0)], now=101.0, horizon=10) == (5, True)
    # 11 s later id 6 is still missing: its transaction rolled back -> move on
    assert advance(5, [(7, 100.0), (8, 100.0)], now=111.0, horizon=10) == (8, False)
    # SQLite (horizon 0): ids are visible in order, a gap is final
    assert advance(5, [(7, 100.0)], now=100.0, horizon=0) == (7, False)
    assert advance(5, [], now=100.0, horizon=10) == (5, False)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    settings = WebhookSettings(backoff_initial_s=1, backoff_max_s=60)
    rng = random.Random(1)
    for attempts, base in ((1, 1), (2, 2), (3, 4), (7, 60), (30, 60)):
        wait = backoff(attempts, settings, rng)
        assert base / 2 <= wait <= base
