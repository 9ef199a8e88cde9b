"""The registration point of ``airtune.allocation``: importing it registers every built-in
allocator (``ALLOCATORS``) and scheduler (``SCHEDULERS``)."""

from airtune.allocation import (
    baselines,  # noqa: F401  (equal allocator, schedulers)
    class_balanced,  # noqa: F401  (class_balanced, Fed-CBS)
)
from airtune.allocation.split_fed import planner as split_fed_planner  # noqa: F401  (lyapunov)
from airtune.allocation.switching import planner as switching_planner  # noqa: F401  (model_switching)
from airtune.allocation.tsfa import planner as tsfa_planner  # noqa: F401  (tsfa)
