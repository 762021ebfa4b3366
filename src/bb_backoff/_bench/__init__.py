"""The import benchmark: scenarios, contenders, runs and reports (used by the CLI only).

Nothing in the library imports this package; it needs the mock
(:mod:`bb_backoff.testing`) and, for the peers and the chart, the ``bench``
extra.
"""

from .._redis_server import RedisUnavailable
from ._contenders import CONTENDERS, Arena, Contender, contender_named, ours_async
from ._importer import ImportState, Task, import_async, import_sync
from ._report import json_rows, markdown_table, write_chart
from ._runner import (
    MAX_IMPORTERS,
    Row,
    available_contenders,
    check_redis,
    fleet_label,
    private_redis,
    run_all,
    run_fleet,
    run_one,
    run_real,
)
from ._scenarios import SCENARIOS, Scenario, scenario_named

__all__ = [
    "CONTENDERS",
    "MAX_IMPORTERS",
    "SCENARIOS",
    "Arena",
    "Contender",
    "ImportState",
    "RedisUnavailable",
    "Row",
    "Scenario",
    "Task",
    "available_contenders",
    "check_redis",
    "contender_named",
    "fleet_label",
    "import_async",
    "import_sync",
    "json_rows",
    "markdown_table",
    "ours_async",
    "private_redis",
    "run_all",
    "run_fleet",
    "run_one",
    "run_real",
    "scenario_named",
    "write_chart",
]
