"""One performance report: the layer, service and streaming benchmarks in one Markdown page with plots.

Each benchmark prints one JSON object as its last line; this reads those (``--layers``, ``--service``,
``--streaming``, ``--soak``, ``--fuzz``: files whose last JSON line is used), or runs them first (``--run``:
``bench/ssm_layers.py --quick`` and ``bench/service.py`` on random small models, a few minutes), and writes
``bench/REPORT.md`` with its plots (matplotlib, PNG) under ``bench/report/``:

* latency distributions per endpoint and concurrency (p50, p95, p99),
* throughput against concurrency,
* real-time factor per model (streaming, batch 1) and per endpoint (whole requests, queueing included),
* contraction orders against each other per layer: the planner's estimated cost and the measured time.

A ``markdown_table`` from ``bench/peers.py`` (comparisons with other systems) is included when that module
and its ``--peers`` JSON are present. Missing inputs leave their section out with a note.

    python bench/report.py --layers bench/results/ssm_layers.txt --service bench/results/service.txt
    python bench/report.py --run
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


# ---- inputs ---------------------------------------------------------------------------------------------------
def last_json(path: Path | None) -> dict | None:
    """The last line of ``path`` that is a JSON object (benchmarks print theirs last), or None."""
    if path is None or not path.exists():
        return None
    text = path.read_text()
    try:  # a whole file of JSON (bench/fuzz.py writes its counts indented)
        whole = json.loads(text)
        return whole if isinstance(whole, dict) else None
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def run_benchmark(command: list[str], output: Path) -> Path:
    """Run one benchmark script, keeping everything it printed in ``output`` (its last line is the JSON)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    print(f"# running {' '.join(command)}", file=sys.stderr)
    with open(output, "w") as out:
        subprocess.run([sys.executable, *command], cwd=ROOT, stdout=out, check=True)
    return output


def run_all(results: Path) -> dict[str, Path]:
    models = Path(tempfile.mkdtemp(prefix="report-models-"))
    return {
        "layers": run_benchmark(["bench/ssm_layers.py", "--quick"], results / "ssm_layers.txt"),
        "service": run_benchmark(["bench/service.py", "--serve", "process", "--random-models", str(models),
                                  "--concurrency", "1,4,16", "--seconds", "8", "--audio-seconds", "2"],
                                 results / "service.txt"),
    }


# ---- plots ----------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_latency(service: dict, out: Path) -> Path:
    plt = _pyplot()
    rows = service["results"]
    endpoints = list(dict.fromkeys(r["endpoint"] for r in rows))
    fig, axes = plt.subplots(1, len(endpoints), figsize=(3.2 * len(endpoints), 3.2), sharey=True, squeeze=False)
    for ax, endpoint in zip(axes[0], endpoints):
        cells = [r for r in rows if r["endpoint"] == endpoint and r["ok"]]
        x = list(range(len(cells)))
        p50 = [1000 * r["p50_s"] for r in cells]
        p95 = [1000 * r["p95_s"] for r in cells]
        p99 = [1000 * r["p99_s"] for r in cells]
        ax.vlines(x, p50, p99, color="tab:blue", alpha=0.35, linewidth=8, label="p50 to p99")
        ax.scatter(x, p50, color="tab:blue", zorder=3, label="p50")
        ax.scatter(x, p95, color="tab:orange", marker="_", s=200, zorder=3, label="p95")
        ax.scatter(x, p99, color="tab:red", marker="_", s=200, zorder=3, label="p99")
        ax.set_xticks(x, [str(r["concurrency"]) for r in cells])
        ax.set_title(endpoint)
        ax.set_xlabel("concurrent clients")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("latency (ms)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Request latency, {service.get('audio_seconds', '?')} s clips", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_throughput(service: dict, out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for endpoint in dict.fromkeys(r["endpoint"] for r in service["results"]):
        cells = [r for r in service["results"] if r["endpoint"] == endpoint]
        ax.plot([r["concurrency"] for r in cells], [r["throughput_rps"] for r in cells], marker="o", label=endpoint)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests per second")
    ax.set_title("Throughput against concurrency", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def rtf_rows(layers: dict | None, service: dict | None, streaming: dict | None) -> list[tuple[str, str, float]]:
    """(what, how, real-time factor) from whichever inputs are there."""
    rows: list[tuple[str, str, float]] = []
    for key, run in (layers or {}).get("streaming", {}).items():
        for task, s in run["networks"].items():
            rows.append((task, f"step(), 20 ms chunks, {run['threads']} thread(s)", s["rtf"]))
    for key, run in (streaming or {}).get("streaming", {}).items():  # bench/streaming.py: wall and CPU clocks
        for task, s in run.get("networks", {}).items():
            for clock in ("cpu", "wall"):
                if clock in s:
                    rows.append((task, f"bench/streaming.py, {run['threads']} thread(s), {clock} time",
                                 s[clock]["rtf"]))
    for r in (service or {}).get("results", []):
        if r["ok"] and r["concurrency"] == 1:
            rows.append((r["endpoint"], "HTTP request, 1 client", r["rtf_p50"]))
    return rows


def plot_rtf(rows: list[tuple[str, str, float]], out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(rows) + 1.2))
    labels = [f"{what} ({how})" for what, how, _ in rows]
    values = [rtf for _, _, rtf in rows]
    ax.barh(range(len(rows)), values, color=["tab:green" if v < 1 else "tab:red" for v in values])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("real-time factor (processing s per audio s; < 1 is faster than real time)")
    ax.invert_yaxis()
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_orders(layers: dict, out: Path) -> Path | None:
    """Left: measured time against the planner's estimate for every order that ran. Right: every candidate
    order's estimated cost relative to the chosen one (filled: measured, hollow: not run, with the reason in the
    JSON), so orders too dear to run still show how far off they are."""
    plans = {mode: r.get("plans", {}).get("plans", []) for mode, r in layers.get("layers", {}).items()}
    plans = {mode: rows for mode, rows in plans.items() if rows}
    if not plans:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, (mode, rows) in enumerate(plans.items()):
        color = f"C{index}"
        ran = [p for p in rows if "fwd" in p]
        left.scatter([p["cost"] for p in ran], [p["fwd"]["median_ms"] for p in ran], color=color, label=mode, alpha=0.8)
        chosen = [p for p in ran if p["chosen"]]
        left.scatter([p["cost"] for p in chosen], [p["fwd"]["median_ms"] for p in chosen], color=color, marker="*",
                     s=220, edgecolor="black", zorder=3)
        for p in rows:
            right.scatter(index, p["cost_vs_chosen"], s=30, color=color if "fwd" in p else "none", edgecolor=color)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("planner's estimated cost (matmul-FLOP equivalents)")
    left.set_ylabel("measured forward, no_grad (ms)")
    left.set_title("Orders that ran (star: the planner's choice)", fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    right.set_yscale("log")
    right.set_xticks(range(len(plans)), list(plans))
    right.set_ylabel("estimated cost / chosen order's")
    right.set_title("Every candidate order (hollow: not run)", fontsize=10)
    right.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ---- Markdown -------------------------------------------------------------------------------------------------
def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def headline(layers: dict | None, service: dict | None, rtf: list[tuple[str, str, float]]) -> str:
    """The few numbers the README shows: per endpoint at its best concurrency, per model streaming RTF."""
    rows = []
    for endpoint in dict.fromkeys(r["endpoint"] for r in (service or {}).get("results", [])):
        cells = [r for r in service["results"] if r["endpoint"] == endpoint and r["ok"]]
        if not cells:
            continue
        best = max(cells, key=lambda r: r["throughput_rps"])
        single = min(cells, key=lambda r: r["concurrency"])
        rows.append([f"`{endpoint}`", f"{number(1000 * single['p50_s'], 0)} ms", f"{number(best['throughput_rps'])} "
                     f"at {best['concurrency']} clients", number(single["rtf_p50"], 3)])
    parts = []
    if rows:
        parts.append(table(["endpoint", "p50 latency, 1 client", "best throughput (req/s)", "RTF, 1 client"], rows))
    # Streaming speed per model: the streaming benchmark's CPU time when given (wall time on a shared machine
    # mostly measures the wait for a core), else the layer benchmark's streaming section.
    streaming = [r for r in rtf if r[1].startswith("bench/streaming.py") and r[1].endswith("cpu time")] or \
        [r for r in rtf if r[1].startswith("step()")]
    if streaming:
        parts.append(table(["model", "streaming", "RTF", "x real time"],
                           [[f"`{what}`", how, number(value, 3), number(1 / value, 1)] for what, how, value in streaming]))
    return "\n\n".join(parts)


def layers_section(layers: dict) -> str:
    rows = []
    for mode, r in layers["layers"].items():
        e = r["eager"]
        rows.append([mode, number(e["fwd"]["median_ms"]), number(r.get("target_fwd")), number(r.get("ratio_fwd"), 2),
                     number(e["fwdbwd"]["median_ms"]), number(r.get("target_fwdbwd")),
                     number(r.get("ratio_fwdbwd"), 2), number(r.get("floor", {}).get("floor_ms"))])
    env = layers["environment"]
    setup = layers["setup"]
    return (f"Batch {setup['batch']}, {setup['channels']} channels, {setup['states']} states, length "
            f"{setup['length']}, fp32, CPU; torch {env['torch']}, {env['threads']} thread(s), load average "
            f"{env.get('load_start')} at start{' (quick run)' if env.get('quick') else ''}. Median ms; ratio = ours "
            f"/ target (< 1 meets it).\n\n"
            + table(["layer", "fwd", "target", "ratio", "fwd+bwd", "target", "ratio", "floor"], rows))


def orders_section(layers: dict) -> str:
    rows = []
    for mode, r in layers["layers"].items():
        p = r.get("plans")
        if not p:
            continue
        ran = [x for x in p["plans"] if "fwd" in x]
        chosen = next((x for x in ran if x["chosen"]), None)
        fastest = min(ran, key=lambda x: x["fwd"]["median_ms"]) if ran else None
        rows.append([mode, p["candidates"], len(ran), number(chosen["fwd"]["median_ms"]) if chosen else "-",
                     number(fastest["fwd"]["median_ms"]) if fastest else "-",
                     "yes" if p.get("chosen_is_fastest") else "no"])
    return table(["layer", "orders", "measured", "chosen (ms)", "fastest (ms)", "chosen is fastest"], rows)


def service_section(service: dict) -> str:
    rows = [[r["endpoint"], r["concurrency"], f"{r['ok']}/{r['requests']}", number(r["throughput_rps"]),
             number(1000 * r["p50_s"], 0), number(1000 * r["p95_s"], 0), number(1000 * r["p99_s"], 0),
             number(r["rtf_p50"], 3), number(r.get("server_cpu_ms_per_request"), 0)]
            for r in service["results"]]
    return (f"`bench/service.py` against {service.get('mode') or 'a'} server, {service.get('audio_seconds')} s "
            "clips.\n\n" + table(["endpoint", "clients", "ok/sent", "req/s", "p50 ms", "p95 ms", "p99 ms",
                                  "RTF p50", "server CPU ms/req"], rows))


def soak_section(soak: dict) -> str:
    """The request mix and the concurrent streams of ``bench/soak.py`` (either may be absent)."""
    checks = ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in soak["checks"].items())
    parts = []
    if soak.get("requests"):
        parts.append(
            f"{soak['requests']} requests at concurrency {soak['concurrency']}: {soak['errors']} errors, "
            f"{soak['admission_503']} admission 503s."
            + (f" Unexpected statuses (0: no HTTP answer, a transport error): {', '.join(soak['unexpected'])}."
               if soak.get("unexpected") else ""))
    streams = soak.get("streams")
    if streams:
        errors = ", ".join(f"{kind} {n}" for kind, n in streams["errors"].items()) or "none"
        parts.append(
            f"{streams['streams']} concurrent streams for {streams['minutes']:g} minutes: "
            f"{streams['sessions_started']} sessions ({streams['sessions_completed']} completed, "
            f"{streams['sessions_abandoned']} abandoned or dropped on purpose), "
            f"{number(streams['audio_seconds_sent'])} s of audio sent in real time, "
            f"{streams['messages_total']} server messages; "
            f"capacity refusals {sum(streams['capacity_refusals'].values())}; "
            f"errors: {errors}."
            + "".join(f"\n\n- `{example}`" for example in streams.get("error_examples", [])))
    load = f"; load average {soak['load_mean']:.1f} on average" if "load_mean" in soak else ""
    parts.append(
        f"Resident memory (server and workers) {number(soak['rss_warm_mb'])} MB after warm-up, peak "
        f"{number(soak['rss_peak_mb'])} MB ({100 * soak['rss_growth']:.2f}% growth); server descriptors "
        f"{soak['server_fds_warm']} -> {soak['server_fds_last']}; sessions left {soak['sessions_last']:g}{load}.")
    parts.append(f"Checks: {checks}.")
    return "\n\n".join(parts)


def fuzz_section(fuzz: dict) -> str:
    rows = [[f"`{endpoint}`", count] for endpoint, count in fuzz["cases"].items()]
    return table(["endpoint", "cases"], rows) + f"\n\nTotal {sum(fuzz['cases'].values())} cases, none a 5xx or a hang."


def peers_section(path: Path | None) -> str | None:
    """``bench/peers.py``'s own table, when that module and its results exist."""
    data = last_json(path)
    if data is None:
        return None
    sys.path.insert(0, str(BENCH))
    try:
        import peers  # noqa: PLC0415 - optional: another benchmark, maybe not there
    except ImportError:
        return None
    render = getattr(peers, "markdown_table", None)
    return render(data) if render is not None else None


def write_report(inputs: dict[str, Path | None], out: Path, plots: Path) -> str:
    layers, service = last_json(inputs.get("layers")), last_json(inputs.get("service"))
    streaming, soak, fuzz = (last_json(inputs.get(k)) for k in ("streaming", "soak", "fuzz"))
    plots.mkdir(parents=True, exist_ok=True)
    rtf = rtf_rows(layers, service, streaming)

    def link(path: Path | None, alt: str) -> str:
        return f"![{alt}]({path.relative_to(out.parent).as_posix()})" if path is not None else ""

    sections = ["# Performance report", "Generated by `bench/report.py` from the JSON lines of the benchmarks "
                "(regenerate: `python bench/report.py --run`, or point it at saved outputs). Numbers are from a "
                "2-core CPU machine; when it was shared with other jobs the load average below says so, and "
                "latencies then include waiting for a core.", "## Headline", headline(layers, service, rtf) or
                "_no service or layer results given_"]
    if service:
        sections += ["## Service: latency and throughput", service_section(service),
                     link(plot_latency(service, plots / "latency.png"), "latency per endpoint"),
                     link(plot_throughput(service, plots / "throughput.png"), "throughput against concurrency")]
    if rtf:
        sections += ["## Real-time factor per model", link(plot_rtf(rtf, plots / "rtf.png"), "real-time factor"),
                     table(["what", "how", "RTF"], [[w, h, number(v, 4)] for w, h, v in rtf])]
    if layers:
        sections += ["## The layer", layers_section(layers), "## Contraction orders against each other",
                     orders_section(layers), link(plot_orders(layers, plots / "orders.png"), "contraction orders")]
    if streaming is None:
        sections += ["## Streaming", "_no `bench/streaming.py` output given (`--streaming`); the streaming "
                     "real-time factors above come from the layer benchmark_"]
    if soak:
        sections += ["## Soak", soak_section(soak)]
    if fuzz:
        sections += ["## Bad-input fuzzing: cases per endpoint", fuzz_section(fuzz)]
    peers = peers_section(inputs.get("peers"))
    if peers:
        sections += ["## Against other systems", peers]
    text = "\n\n".join(s for s in sections if s) + "\n"
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("layers", "service", "streaming", "soak", "fuzz", "peers"):
        parser.add_argument(f"--{name}", type=Path, help=f"output of the {name} benchmark (its last JSON line is read)")
    parser.add_argument("--run", action="store_true", help="run the layer (quick) and service benchmarks first")
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="where --run keeps outputs")
    parser.add_argument("--out", type=Path, default=BENCH / "REPORT.md")
    parser.add_argument("--plots", type=Path, default=BENCH / "report")
    args = parser.parse_args(argv)
    inputs = {name: getattr(args, name) for name in ("layers", "service", "streaming", "soak", "fuzz", "peers")}
    if args.run:
        inputs.update(run_all(args.results))
    write_report(inputs, args.out, args.plots)
    print(f"wrote {args.out} and plots in {args.plots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
