"""Print the parameter count and algorithmic latency of every network size: ``python -m model_zoo.summary``."""

from __future__ import annotations

from .nets import TASKS, build_network, parameter_count


def summary_rows() -> list[tuple[str, str, int, int]]:
    rows = []
    for task, spec in TASKS.items():
        for size in spec.sizes:
            net = build_network(task, size)
            rows.append((task, size, parameter_count(net), net.algorithmic_latency))
    return rows


def main() -> None:
    print(f"{'task':8s} {'size':6s} {'parameters':>12s} {'latency (samples)':>18s}")
    for task, size, params, latency in summary_rows():
        print(f"{task:8s} {size:6s} {params:12,d} {latency:18d}")


if __name__ == "__main__":
    main()
