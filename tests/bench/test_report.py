"""``bench/report.py`` turns benchmark JSON lines into one Markdown report with plots."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_report_module():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def service_result() -> dict:
    rows = []
    for endpoint in ("transcribe", "denoise"):
        for concurrency, rps in ((1, 10.0), (8, 30.0)):
            rows.append({"endpoint": endpoint, "concurrency": concurrency, "requests": 50, "ok": 50,
                         "statuses": {"200": 50}, "throughput_rps": rps, "audio_seconds_per_second": 2 * rps,
                         "p50_s": 0.05 * concurrency, "p95_s": 0.08 * concurrency, "p99_s": 0.1 * concurrency,
                         "rtf_p50": 0.025 * concurrency, "rtf_p95": 0.04, "health_p50_ms": 5.0,
                         "health_p99_ms": 9.0, "server_cpu_ms_per_request": 30.0})
    return {"url": "http://127.0.0.1:1", "mode": "process", "audio_seconds": 2.0, "results": rows}


def layers_result() -> dict:
    plans = [{"cost": 1e9, "cost_vs_chosen": 1.0, "chosen": True, "steps": "a", "fwd": {"median_ms": 10.0}},
             {"cost": 3e9, "cost_vs_chosen": 3.0, "chosen": False, "steps": "b", "fwd": {"median_ms": 25.0}},
             {"cost": 9e10, "cost_vs_chosen": 90.0, "chosen": False, "steps": "c", "skipped": "too dear"}]
    layer = {"eager": {"fwd": {"median_ms": 10.0}, "fwdbwd": {"median_ms": 30.0}}, "target_fwd": 12.0,
             "ratio_fwd": 0.83, "target_fwdbwd": 40.0, "ratio_fwdbwd": 0.75, "floor": {"floor_ms": 4.0},
             "plans": {"candidates": 3, "distinct": 3, "chosen_is_fastest": True, "plans": plans}}
    stream = {"threads": 1, "chunk_samples": 320, "networks": {
        "kws": {"rtf": 0.02, "parameters": 1000, "x_faster_than_real_time": 50.0, "ms_per_chunk": 0.4,
                "source": "random", "capped": False, "audio_s": 3.0}}}
    return {"environment": {"torch": "2", "threads": 1, "load_start": [0.1, 0.1, 0.1], "quick": True},
            "setup": {"batch": 8, "channels": 64, "states": 16, "length": 16000},
            "layers": {"dws": layer}, "streaming": {"threads_1": stream}}


def test_report_has_headline_tables_and_every_plot(tmp_path):
    report = load_report_module()
    inputs = {}
    for name, data in (("service", service_result()), ("layers", layers_result())):
        inputs[name] = tmp_path / f"{name}.txt"
        inputs[name].write_text("a table the benchmark printed\n" + json.dumps(data) + "\n")
    out, plots = tmp_path / "REPORT.md", tmp_path / "report"
    text = report.write_report(inputs, out, plots)
    assert out.read_text() == text
    assert "## Headline" in text and "| `transcribe` | 50 ms | 30.0 at 8 clients | 0.025 |" in text
    assert "| `kws` | step(), 20 ms chunks, 1 thread(s) | 0.020 | 50.0 |" in text
    for name in ("latency", "throughput", "rtf", "orders"):
        png = plots / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"](report/{name}.png)" in text
    assert "| dws | 3 | 2 | 10.0 | 10.0 | yes |" in text  # two orders measured, the chosen one fastest


def test_missing_inputs_leave_their_sections_out(tmp_path):
    report = load_report_module()
    text = report.write_report({"service": tmp_path / "absent.txt"}, tmp_path / "R.md", tmp_path / "plots")
    assert "_no service or layer results given_" in text and "![" not in text


def test_streaming_benchmark_cpu_times_lead_the_headline(tmp_path):
    report = load_report_module()
    stream = {"streaming": {"threads_1": {"threads": 1, "networks": {"asr": {
        "wall": {"rtf": 0.5, "x_real_time": 2.0}, "cpu": {"rtf": 0.04, "x_real_time": 25.0}}}}}}
    path = tmp_path / "streaming.txt"
    path.write_text(json.dumps(stream) + "\n")
    text = report.write_report({"streaming": path}, tmp_path / "R.md", tmp_path / "plots")
    assert "| `asr` | bench/streaming.py, 1 thread(s), cpu time | 0.040 | 25.0 |" in text
    assert "wall time" in text  # both clocks in the RTF table and plot


def test_soak_section_reports_requests_and_streams_and_failed_checks():
    report = load_report_module()
    soak = {"requests": 10000, "concurrency": 8, "errors": 0, "admission_503": 3, "rss_warm_mb": 1000.0,
            "rss_peak_mb": 1020.0, "rss_growth": 0.02, "server_fds_warm": 19, "server_fds_last": 13,
            "sessions_last": 0.0, "load_mean": 2.5,
            "checks": {"rss_growth_under_limit": True, "no_stream_errors": False},
            "streams": {"streams": 6, "minutes": 30.0, "sessions_started": 340, "sessions_completed": 243,
                        "sessions_abandoned": 96, "audio_seconds_sent": 10874.2, "messages_total": 72993,
                        "capacity_refusals": {"handshake_503": 2}, "errors": {"close_1011": 1}}}
    text = report.soak_section(soak)
    assert "10000 requests at concurrency 8: 0 errors, 3 admission 503s." in text
    assert "6 concurrent streams for 30 minutes: 340 sessions (243 completed" in text
    assert "capacity refusals 2; errors: close_1011 1." in text
    assert "(2.00% growth)" in text and "no_stream_errors FAILED" in text
    del soak["streams"]
    soak["requests"] = 200
    assert "streams" not in report.soak_section(soak)
