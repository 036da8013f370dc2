"""Random draws: one seeded stream per part of the county, weighted picks, Bernoulli draws."""

from __future__ import annotations

import random
from typing import Any

__all__ = ["Rng"]


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
