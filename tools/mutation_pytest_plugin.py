"""Pytest plugin for ``make mutate``: Hypothesis without deadlines, and derandomized.

Mutated code runs through mutmut's trampolines and is several times slower, so a deadline
would kill mutants for being slow rather than wrong; a fixed example sequence makes each
mutant's verdict repeatable.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("mutation", deadline=None, derandomize=True, print_blob=False)
settings.load_profile("mutation")
