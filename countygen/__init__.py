"""An independent synthetic county generator: rosters, dibao and filing exports with known truth.

It imports nothing from the product (``reconcile``), so the product's figures measured on its
counties are not the product agreeing with itself.
"""

from .county import *  # noqa: F401,F403
from .county import __all__  # noqa: F401
