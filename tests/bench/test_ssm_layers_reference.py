"""``bench/ssm_layers.py --reference``: the same-run comparison with the reference implementation.

The reference (github.com/Brainchip-Inc/Centaurus) is not needed, and none of its code is here: each test writes a
stand-in package of its own with the same import path and constructor keywords, and a layer that does little.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for PATH/centaurus/ssm.py: the constructor keywords the bench passes, a torch.compile-decorated
# helper (which the bench must run eagerly: calling it compiled fails the test at once instead of compiling),
# and a causal layer of the right shape.
STAND_IN = '''
import torch
from torch import nn


@torch.compile
def _decay(length):
    return torch.linspace(1.0, 0.5, length)


class SSMLayer(nn.Module):
    def __init__(self, num_states, in_channels, out_channels, state_blocks=None, mode="s5", norm="batch",
                 postact="relu", dropout=None, dropout_dim=1, use_activations=False):
        super().__init__()
        assert (norm, postact) == (None, None), "the bench must switch the reference's dws BatchNorm/ReLU off"
        self.settings = (num_states, state_blocks, mode)
        self.mix = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        assert not hasattr(_decay, "_torchdynamo_orig_callable"), "still the torch.compile wrapper"
        return self.mix(x).cumsum(-1) * _decay(x.shape[-1])
'''


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """The bench's reference module, and a stand-in checkout; restores sys.path and sys.modules afterwards."""
    monkeypatch.setattr(sys, "path", [str(ROOT / "bench"), *sys.path])
    package = tmp_path / "ref" / "centaurus"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ssm.py").write_text(textwrap.dedent(STAND_IN))
    yield importlib.import_module("ssm_layers_reference"), tmp_path / "ref"
    for name in [n for n in sys.modules if n == "centaurus" or n.startswith("centaurus.")]:
        del sys.modules[name]


def test_interleaved_alternates_after_warming_up_both(bench):
    reference, _ = bench
    calls: list[str] = []
    a, b = reference.interleaved(lambda: calls.append("A"), lambda: calls.append("B"), 2, 3)
    assert "".join(calls) == "AB" * 5
    assert len(a) == len(b) == 3 and all(t >= 0 for t in a + b)


def test_comparison_times_both_layers_alternately(bench, capsys):
    reference, path = bench
    calls: list[str] = []

    def record(module: torch.nn.Module, inputs: tuple) -> None:
        if type(module).__name__ == "SSMLayer":  # ours (model_zoo) or the stand-in (centaurus.ssm)
            calls.append("B" if type(module).__module__ == "centaurus.ssm" else "A")

    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        result = reference.compare_with_reference(path, ["neck", "dws", "group"], 1, 3, memory=False, batch=2,
                                                  length=64, log=lambda line: None)
    finally:
        handle.remove()
    # Per mode: one shape check of each, then per kind (fwd, fwd+bwd) 1 warm-up and 3 timed calls, alternating.
    assert "".join(calls) == ("AB" + "AB" * 4 * 2) * 2
    assert result["eager_unwrapped"] == ["centaurus.ssm._decay"]
    assert result["skipped"] == {"group": reference.NOT_COMPARED["group"]}
    neck = result["modes"]["neck"]
    assert neck["reference_kwargs"] == {"num_states": 16, "in_channels": 64, "out_channels": 64, "state_blocks": 4,
                                        "mode": "neck", "norm": None, "postact": None}
    assert result["modes"]["dws"]["reference_kwargs"]["state_blocks"] is None
    for row in result["modes"].values():
        assert row["output_shape"] == (2, 64, 64)
        for kind in ("fwd", "fwdbwd"):
            k = row[kind]
            assert k["ours"]["runs"] == k["reference"]["runs"] == 3
            assert k["speedup"] == pytest.approx(k["reference"]["median_ms"] / k["ours"]["median_ms"])
            assert k["meets_goal"] == (k["speedup"] >= 2)
    json.loads(json.dumps(result, default=str))  # it goes into the bench's JSON line

    reference.print_reference(result)
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("neck J=4"))
    fwd = neck["fwd"]
    assert f"{fwd['ours']['median_ms']:.0f}" in row and f"{fwd['reference']['median_ms']:.0f}" in row
    assert f"{fwd['speedup']:.2f}" in row and f"{neck['fwdbwd']['speedup']:.2f}" in row
    assert "group 64 G=4 not compared" in out and "centaurus.ssm._decay" in out


def test_memory_of_both_layers_in_fresh_processes(bench):
    reference, path = bench
    ours_known = {"fwd": {"peak_mb": 1.5}, "fwdbwd": {"peak_mb": 2.5}}  # the main table's, reused as they are
    result = reference.compare_with_reference(path, ["s5"], 0, 1, ours_memory={"s5": ours_known}, batch=2,
                                              length=64, log=lambda line: None)
    memory = result["modes"]["s5"]["memory"]
    assert memory["ours"] == ours_known
    for kind in ("fwd", "fwdbwd"):
        probe = memory["reference"][kind]
        assert isinstance(probe.get("peak_mb"), float) and probe["method"], probe  # else it failed: the error


def test_a_path_without_the_reference_is_refused(bench, tmp_path):
    reference, _ = bench
    with pytest.raises(FileNotFoundError, match="git clone https://github.com/Brainchip-Inc/Centaurus"):
        reference.load_reference(tmp_path / "empty")
