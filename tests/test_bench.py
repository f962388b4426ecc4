"""`stylecam bench` runs end to end and its JSON has what machines read (no timing assertions)."""
from __future__ import annotations

import json

from stylecam import cli


def _run_json(capsys, *argv) -> dict:
    assert cli.main(["bench", *argv, "--json", "--threads", "1"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_quick_json(capsys):
    res = _run_json(capsys, "--quick")
    assert {"system", "reference", "weights", "clip", "network", "pipeline"} <= set(res)
    assert {"device", "cpu", "cpu_flags", "torch_threads", "torch", "opencv"} <= set(res["system"])
    rows = {(r["arch"], r["compute"]): r for r in res["network"]}
    assert {("johnson", "reference"), ("johnson", "torch-optimized"), ("johnson", "openvino-fp32"),
            ("fast", "torch-fp32"), ("fast", "torch-optimized"), ("fast", "openvino-fp32")} <= set(rows)
    ref_ms = rows[("johnson", "reference")]["median_ms"]
    for (arch, compute), r in rows.items():
        assert {"size", "n", "median_ms", "p90_ms", "fps", "speedup_vs_reference", "max_abs_diff"} <= set(r)
        assert r["median_ms"] > 0 and r["n"] >= 3
        # every ratio is against the reference row of the same run
        assert abs(r["speedup_vs_reference"] - ref_ms / r["median_ms"]) <= 1e-9 * r["speedup_vs_reference"]
        if compute in ("reference", "torch-fp32"):
            assert r["max_abs_diff"] is None  # the row the others are compared with
        elif compute in ("torch-optimized", "openvino-fp32"):
            assert r["max_abs_diff"] <= 0.05  # the exact modes: fp32 rounding only (0..255 scale; goal: 2)
        else:
            assert r["max_abs_diff"] <= 16  # bf16 on random nets: not exact, not wrong either
    for p in res["pipeline"]:
        assert {"fps", "latency_ms_median", "latency_ms_p90", "dropped", "frames", "scale"} <= set(p)
        assert p["frames"] >= 1


def test_bench_table_and_style(capsys, styles_env):
    assert cli.main(["bench", "--quick", "--archs", "fast", "--style", "tfast", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "speedup" in out and "tfast" in out and "random init" in out


def test_bench_soak_reports_memory(capsys):
    res = _run_json(capsys, "--soak", "0.05", "--sizes", "64x48", "--archs", "fast")
    assert {"start", "end", "peak"} <= set(res["rss_mb"]) and res["rss_mb"]["peak"] >= res["rss_mb"]["start"] > 0


def test_bench_flicker_dispatch_or_clear_error(capsys, monkeypatch):
    import stylecam.flicker as flicker

    seen = {}
    monkeypatch.setattr(flicker, "bench_flicker", lambda args: seen.setdefault("clips", args.flicker) and 0)
    assert cli.main(["bench", "--flicker", "clip.mp4"]) == 0
    assert seen["clips"] == ["clip.mp4"]


def test_bench_auto_scale_runs_the_live_controller_and_reports_where_it_ended(capsys, monkeypatch):
    """`--scale auto`: each pipeline is scaled by live's controller; one that cannot hold its target (here an
    impossible 10^6 fps) ends at the controller's floor, and the row says so."""
    import stylecam.live as live

    class Impossible(live.ScaleController):
        def __init__(self, target_fps, **kw):
            super().__init__(1e6, every=1, **kw)

    monkeypatch.setattr(live, "ScaleController", Impossible)
    res = _run_json(capsys, "--quick", "--archs", "fast", "--frames", "12", "--scale", "auto")
    assert res["pipeline"] and all(p["scale"] == 0.25 for p in res["pipeline"]), res["pipeline"]
