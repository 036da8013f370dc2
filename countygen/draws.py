"""Random draws: one seeded stream per part of the county, weighted picks, Bernoulli draws."""

from __future__ import annotations

import random
from typing import Any

__all__ = ["Rng", "year_month"]


class Rng(random.Random):
    """random.Random with a weighted pick over (item, weight) pairs and a Bernoulli draw."""

    def p(self, prob: float) -> bool:
        return self.random() < prob

    def pick(self, pairs: tuple[tuple[Any, float], ...] | list[tuple[Any, float]]) -> Any:
        total = 0.0
        for _, w in pairs:
            total += w
        x = self.random() * total
        for item, w in pairs:
            x -= w
            if x < 0:
                return item
        return pairs[-1][0]


def year_month(rng: Rng, y0: int, y1: int) -> str:
    """A 'YYYY-MM' between January of y0 and August of y1 (before the term starts)."""
    y = rng.randrange(y0, y1 + 1)
    m = rng.randrange(1, 9 if y == y1 else 13)
    return f"{y}-{m:02d}"
