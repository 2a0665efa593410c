"""The table ``bench/ssm_layers.py`` prints before its JSON line."""

from __future__ import annotations

from ssm_layers_setup import BATCH, CHANNELS, CHUNK, DESCRIPTION, LENGTH, REFERENCE, STATES

__all__ = ["fmt", "print_report"]


def fmt(value, digits: int = 0, none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def print_report(report: dict) -> None:
    env = report["environment"]
    print(f"Centaurus SSM layer benchmark: B={BATCH}, C={CHANNELS}, N={STATES}, L={LENGTH}, fp32, CPU")
    print(f"torch {env['torch']}, torch.get_num_threads() = {env['threads']}, {env['cpu']}, "
          f"load average {env['load_start']} at start, {env['load_end']} at end")
    print(f"keep_freed_memory() called: {env['keep_freed_memory']} (glibc keeps freed memory, no page faults "
          "on every large allocation)")
    rates = report["rates"]
    print(f"machine: fp32 matmul {rates['matmul_gflops']:.1f} GFLOP/s, real FFT {rates['fft_gflops']:.1f} GFLOP/s "
          f"(n = {rates['fft_n']}: rfft of 512 rows {rates['rfft_512_rows_ms']:.0f} ms, irfft "
          f"{rates['irfft_512_rows_ms']:.0f} ms)")
    print()
    head = (f"{'layer':13s} | {'fwd':>6s} {'ref E':>6s} {'target':>6s} {'ratio':>5s} | {'f+b':>6s} {'ref E':>6s} "
            f"{'target':>6s} {'ratio':>5s} | {'nograd':>6s} | {'mem f':>6s} {'mem fb':>6s} | {'cmp f':>6s} "
            f"{'cmp fb':>6s} {'ref C f':>7s} {'ref C fb':>8s} | {'floor':>6s} {'x flr':>5s}")
    print("Eager and compiled timings (median ms), peak memory (MB), floor of the chosen order (ms)")
    print(head)
    print("-" * len(head))
    for mode, r in report["layers"].items():
        e, ref, c = r["eager"], REFERENCE[mode], r.get("compile", {})
        cf = c["fwd"]["median_ms"] if c.get("ok") else None
        cfb = c["fwdbwd"]["median_ms"] if c.get("ok") else None
        cmp_note = "" if c.get("ok") or not c else ("skip" if c.get("skipped") else "fail")
        mem = r.get("memory", {})
        print(
            f"{DESCRIPTION[mode]:13s} | {fmt(e['fwd']['median_ms']):>6s} {fmt(ref['fwd_eager']):>6s} "
            f"{fmt(r['target_fwd']):>6s} {fmt(r['ratio_fwd'], 2):>5s} | {fmt(e['fwdbwd']['median_ms']):>6s} "
            f"{fmt(ref['fwdbwd_eager']):>6s} {fmt(r['target_fwdbwd']):>6s} {fmt(r['ratio_fwdbwd'], 2):>5s} | "
            f"{fmt(e['fwd_nograd']['median_ms']):>6s} | {fmt(mem.get('fwd', {}).get('peak_mb')):>6s} "
            f"{fmt(mem.get('fwdbwd', {}).get('peak_mb')):>6s} | {fmt(cf, none=cmp_note or '-'):>6s} "
            f"{fmt(cfb, none=cmp_note or '-'):>6s} {fmt(ref['fwd_compiled']):>7s} {fmt(ref['fwdbwd_compiled']):>8s} | "
            f"{fmt(r['floor']['floor_ms']):>6s} {fmt(e['fwd']['median_ms'] / r['floor']['floor_ms'], 1):>5s}"
        )
    print("ratio = ours / target (target = reference eager / 2; < 1 meets it). x flr = measured fwd / floor.")
    failures = {m: r["compile"]["error"] for m, r in report["layers"].items() if r.get("compile") and not r["compile"].get("ok")}
    for mode, err in failures.items():
        print(f"  torch.compile {DESCRIPTION[mode]}: {err}")
    compiled = {m: r["compile"] for m, r in report["layers"].items() if r.get("compile", {}).get("ok")}
    for mode, c in compiled.items():
        print(f"  torch.compile {DESCRIPTION[mode]}: compile {c['compile_fwd_s']:.0f} s fwd + {c['compile_bwd_s']:.0f} s "
              f"bwd, relative error vs eager {c['rel_error_vs_eager']:.1e}")
    print()
    print("Contraction orders (forward under no_grad, median ms; orders doing the same steps grouped)")
    for mode, r in report["layers"].items():
        p = r.get("plans")
        if not p:
            continue
        fl = r["floor"]
        print(f"{DESCRIPTION[mode]}: {p['candidates']} orders, {p['distinct']} distinct; chosen is fastest measured: "
              f"{p['chosen_is_fastest']}; chosen: {fl['fft_flops'] / 1e9:.2f} GFLOP in FFTs + "
              f"{fl['other_flops'] / 1e9:.2f} GFLOP other -> floor {fl['floor_ms']:.0f} ms")
        skipped = [row for row in p["plans"] if "fwd" not in row]
        for row in [row for row in p["plans"] if "fwd" in row] + skipped[:2]:
            mark = "*" if row["chosen"] else " "
            timing = fmt(row["fwd"]["median_ms"]) + " ms" if "fwd" in row else row["skipped"]
            print(f"  {mark} cost {row['cost']:.2e} ({row['cost_vs_chosen']:6.1f}x)  {timing:>42s}  {row['steps']}")
        if len(skipped) > 2:
            print(f"    ... {len(skipped) - 2} more not run (estimated dearer still; all in the JSON)")
    print()
    for key, stream in report["streaming"].items():
        print(f"Streaming, batch 1, no_grad, {CHUNK}-sample (20 ms) chunks, {stream['threads']} thread(s):")
        for task, s in stream["networks"].items():
            capped = f" (time cap: {s['audio_s']:.1f} s of audio)" if s["capped"] else ""
            print(f"  {task:8s} {s['parameters']:>9,d} params  RTF {s['rtf']:.3f}  "
                  f"{s['x_faster_than_real_time']:.2f}x real time  {s['ms_per_chunk']:.1f} ms/chunk  "
                  f"[{s['source']}]{capped}")
    print()
    print("Memory: peak growth of the resident set (VmHWM reset by clear_refs) during one call in a fresh process.")
