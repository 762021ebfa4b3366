"""Why the default cap on one wait is five minutes: caps side by side, one run.

Without a hint, a rate-limited client can only probe. A short cap notices a
reopened window sooner but spends many more calls on 429s; a long cap is
quieter but slower. This imports the mock's dataset with the flag-on policy
at several caps, in the scenarios where the cap matters, on virtual time,
and prints completion time over the lower bound and wasted calls for each.

Run: ``python benchmarks/caps.py [--seeds N]``.
"""

from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ProcessPoolExecutor

from bb_backoff import ExponentialBackoff
from bb_backoff._bench import Contender, ours_async, run_one, scenario_named

CAPS = (60.0, 120.0, 300.0, 600.0)
SCENARIOS = ("no-hint", "workers-32", "multi-hour", "other-consumer")


def measure(job: tuple[str, float, int]) -> tuple[str, float, float, float, int]:
    """One import: (scenario, cap, time ratio, wasted share, items lost)."""
    scenario, cap, seed = job
    contender = Contender(
        f"flag on, cap {cap:g} s",
        "async",
        ours_async(flag=True, policy=lambda s: ExponentialBackoff(seed=s, max_delay=cap)),
    )
    row = run_one(scenario_named(scenario), contender, seed)
    return scenario, cap, row.time_ratio, row.wasted, row.lost


def main() -> None:
    """Measure every cap in every scenario and print medians over the seeds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="runs per cell (default: 2)")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be positive")
    jobs = [(s, cap, seed) for s in SCENARIOS for cap in CAPS for seed in range(args.seeds)]
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(measure, jobs))
    print(f"median over {args.seeds} seed(s); time = completion / lower bound")
    print(f"{'scenario':16}" + "".join(f"{f'cap {cap:g} s':>22}" for cap in CAPS))
    for scenario in SCENARIOS:
        cells = []
        for cap in CAPS:
            mine = [r for r in results if r[0] == scenario and r[1] == cap]
            ratio = statistics.median(r[2] for r in mine)
            wasted = statistics.median(r[3] for r in mine)
            lost = sum(r[4] for r in mine)
            cells.append(f"{ratio:5.2f}x {wasted:5.0%} w {lost:2d} l")
        print(f"{scenario:16}" + "".join(f"{cell:>22}" for cell in cells))
    print("(w: wasted calls as a share of the calls needed; l: items lost, all seeds)")


if __name__ == "__main__":
    main()
