"""Compare a replayed eval's rows with the committed ones, figure by figure.

    python benchmarks/compare_rows.py results/table1/results.json REPLAY/results.json

For each agent of the replay that the committed table has, it prints the outcome
figures side by side and says whether they are identical (the seeds, the games and the
outcomes the tables report; cost columns such as wall time are not compared). Exits 1
when a compared figure differs, 2 when the files cannot be read.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

COMPARED = ("games", "success", "failure_without_violation", "failure_with_violation", "avg_steps_success",
            "violations", "errors", "missing_games", "seed")
STATS = ("selections", "selection_accuracy", "wrong_pick", "function_errors")


def _rows(path: Path) -> dict[str, dict[str, object]]:
    data = json.loads(path.read_text())
    return {name: row for name, row in data["agents"].items() if isinstance(row, dict)}


def compare(committed: Path, replayed: Path) -> list[tuple[str, str, object, object]]:
    """(agent, figure, committed, replayed) for every figure compared."""
    old, new = _rows(committed), _rows(replayed)
    out: list[tuple[str, str, object, object]] = []
    for agent, row in new.items():
        if agent not in old:
            continue
        for key in COMPARED:
            if key in row or key in old[agent]:
                out.append((agent, key, old[agent].get(key), row.get(key)))
        old_stats, new_stats = old[agent].get("agent_stats") or {}, row.get("agent_stats") or {}
        assert isinstance(old_stats, dict) and isinstance(new_stats, dict)
        for key in STATS:
            if key in old_stats or key in new_stats:
                out.append((agent, key, old_stats.get(key), new_stats.get(key)))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        rows = compare(Path(argv[0]), Path(argv[1]))
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot compare: {exc}", file=sys.stderr)
        return 2
    differ = [r for r in rows if r[2] != r[3]]
    for agent, key, a, b in rows:
        print(f"{agent:10s} {key:28s} {a!s:>12s} {b!s:>12s} {'same' if a == b else 'DIFFERENT'}")
    agents = sorted({r[0] for r in rows})
    print(f"{len(rows) - len(differ)}/{len(rows)} figures identical for {', '.join(agents) or 'no agent'}")
    return 1 if differ or not rows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
