"""The three task networks: shapes, parameter counts, every layer type, exact streaming with random splits."""

from __future__ import annotations

import random

import pytest
import torch

from model_zoo.nets import TASKS, build_network, parameter_count
from model_zoo.nets.asr import ASRConfig, ASRNet
from model_zoo.nets.blocks import LayerSpec, LogMel, SpecAugment, batch_norm_inference
from model_zoo.nets.denoise import DenoiseConfig, DenoiseNet
from model_zoo.nets.kws import KWSConfig, KWSNet

# Parameter counts of the named sizes, printed by `python -m model_zoo.summary`; a change here is deliberate.
EXPECTED_PARAMETERS = {
    ("kws", "small"): 165_165,
    ("kws", "paper"): 145_477,
    ("denoise", "small"): 197_904,
    ("denoise", "paper"): 709_874,
    ("asr", "small"): 1_438_909,
    ("asr", "tiny"): 58_093,
}


@pytest.mark.parametrize("task,size", sorted(EXPECTED_PARAMETERS))
def test_parameter_counts(task, size):
    assert parameter_count(build_network(task, size)) == EXPECTED_PARAMETERS[(task, size)]


def test_asr_paper_size_is_about_30m():
    assert 25e6 < parameter_count(build_network("asr", "paper")) < 40e6


def tiny_kws(kind: str = "centaurus", frontend: str = "waveform") -> KWSNet:
    specs = (LayerSpec(kind, mode="full", state_dim=4), LayerSpec(kind, mode="neck", state_dim=4, blocks=2),
             LayerSpec(kind, mode="s5", state_dim=4, blocks=2))
    if kind != "centaurus":
        specs = tuple(LayerSpec(kind, state_dim=4) for _ in range(3))
    return KWSNet(KWSConfig(channels=(4, 8, 8), layers=specs, factors=(4, 2, 2), frontend=frontend, n_mels=8))


def tiny_denoise(kind: str = "centaurus", frontend: str = "filterbank") -> DenoiseNet:
    return DenoiseNet(DenoiseConfig(channels=(4, 8), factors=(4, 2), layer=LayerSpec(kind, state_dim=4),
                                    bottleneck=LayerSpec(kind, mode="s5", state_dim=4, blocks=2),
                                    frontend=frontend, filters=6, frame=3))


def tiny_asr(kind: str = "centaurus", frontend: str = "mel") -> ASRNet:
    return ASRNet(ASRConfig(frontend=frontend, n_mels=16, width=16, depth=2, layer=LayerSpec(kind, state_dim=4),
                            waveform_channels=(4, 4, 8, 8), subsample=2 if frontend == "waveform" else 3))


def stream(model, x: torch.Tensor, rng: random.Random, sizes=(1, 3, 64, 160, 333, 1000)) -> torch.Tensor:
    state, outs, pos = model.init_state(x.shape[0]), [], 0
    while pos < x.shape[-1]:
        size = rng.choice(sizes)
        y, state = model.step(x[..., pos:pos + size], state)
        outs.append(y)
        pos += size
    if hasattr(model, "flush"):
        y, state = model.flush(state)
        outs.append(y)
    return torch.cat(outs, dim=-1)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def whole_clip(model, x):
    return model.forward_frames(x) if isinstance(model, KWSNet) else model(x)


BUILDERS = {"kws": tiny_kws, "denoise": tiny_denoise, "asr": tiny_asr}


@pytest.mark.parametrize("task", sorted(BUILDERS))
@pytest.mark.parametrize("kind", ["centaurus", "lssl", "liquid_s4"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_streaming_equals_whole_clip(task, kind, dtype, tol):
    torch.manual_seed(0)
    model = BUILDERS[task](kind).to(dtype).eval()
    x = 0.3 * torch.randn(2, 3001, dtype=dtype)  # not a multiple of any pooling factor
    rng = random.Random(f"{task}{kind}")
    with torch.no_grad():
        want = whole_clip(model, x)
        for _ in range(2):
            got = stream(model, x, rng)
            assert got.shape == want.shape
            assert rel_err(got, want) < tol


def test_kws_mel_frontend_streams_exactly():
    torch.manual_seed(0)
    model = tiny_kws(frontend="mel").double().eval()
    x = torch.randn(1, 8000, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(stream(model, x, random.Random(2)), model.forward_frames(x)) < 1e-9


def test_log_mel_step_keeps_float32_under_autocast():
    """The streaming spectrogram keeps its mel product in float32 under autocast, as the whole-clip one does."""
    mel = LogMel(80, 16000)
    x = torch.randn(1, 4000)
    want = mel(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = mel.step(x, mel.init_state(1))
    assert got.dtype == torch.float32 and rel_err(got, want) < 1e-6


def test_batch_norm_inference_matches_the_module():
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm1d(6).eval()
    for tensor in (norm.weight, norm.bias, norm.running_mean):
        tensor.data.normal_()
    norm.running_var.data.uniform_(0.5, 2.0)
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        assert torch.allclose(batch_norm_inference(norm, x), norm(x), atol=1e-6)


def test_denoiser_filterbanks_start_as_perfect_reconstruction():
    torch.manual_seed(0)
    model = tiny_denoise().double()
    x = torch.randn(2, 1, 300, dtype=torch.float64)
    assert rel_err(model.synthesis(model.analysis(x).relu()), x) < 1e-5  # initialised in float32
    with pytest.raises(ValueError, match="even number of filters"):
        DenoiseNet(DenoiseConfig(channels=(4,), factors=(2,), filters=6, frame=4))


def test_denoiser_rejects_unknown_frontend():
    with pytest.raises(ValueError, match="front end"):
        DenoiseConfig(frontend="stft")


@pytest.mark.parametrize("task", ["asr", "denoise"])
def test_waveform_frontend_streams_exactly(task):
    torch.manual_seed(0)
    model = BUILDERS[task](frontend="waveform").double().eval()
    x = torch.randn(2, 3001, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(stream(model, x, random.Random(task)), model(x)) < 1e-9


def test_streaming_cost_does_not_depend_on_history():
    """The state's size is fixed: after 100 chunks it is as large as after one."""
    model = tiny_denoise().eval()
    sizes = []
    with torch.no_grad():
        state = model.init_state(1)
        for _ in range(100):
            _, state = model.step(torch.randn(1, 160), state)
            sizes.append(sum(t.numel() for t in torch.utils._pytree.tree_leaves(state) if torch.is_tensor(t)))
    assert max(sizes[10:]) <= max(sizes[:10])


def test_kws_output_and_running_mean():
    model = tiny_kws().eval()
    x = torch.randn(3, 16000)
    logits = model(x)
    assert logits.shape == (3, 37)
    frames = model.forward_frames(x)
    assert frames.shape == (3, 37, 16000 // model.frame_length)
    mel = tiny_kws(frontend="mel").eval()
    assert mel.forward_frames(x).shape == (3, 37, (1 + (16000 - 400) // 160) // 16)
    assert torch.allclose(frames[..., -1], logits, atol=1e-5)


@pytest.mark.parametrize("frontend", ["filterbank", "waveform"])
def test_denoiser_keeps_length_and_is_causal_within_its_latency(frontend):
    model = tiny_denoise(frontend=frontend).eval()
    x = torch.randn(2, 1000)
    y = model(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 500:] += 1
    block = model.block_length
    cut = 500 - 500 % block  # outputs of earlier blocks cannot see sample 500
    # FFT convolution rounding spreads ~1e-7 relative error over the whole clip, hence not exact equality.
    assert torch.allclose(model(x2)[:, :cut], y[:, :cut], atol=1e-5)
    assert not torch.allclose(model(x2)[:, cut + block:], y[:, cut + block:], atol=1e-3)
    assert model.algorithmic_latency == block - 1


def test_asr_output_lengths_match_forward():
    model = tiny_asr().eval()
    for length in (399, 400, 959, 960, 16000):
        out = model(torch.randn(1, length))
        assert out.shape[1] == 29
        assert out.shape[-1] == int(model.output_lengths(torch.tensor([length]))[0])


def test_unknown_task_and_size():
    with pytest.raises(ValueError, match="unknown task"):
        build_network("tts")
    with pytest.raises(ValueError, match="unknown size"):
        build_network("kws", "huge")
    assert set(TASKS) == {"kws", "denoise", "asr"}


def test_spec_augment_masks_while_training_and_is_the_identity_at_inference():
    """SpecAugment hides bands and stretches of each example independently in training mode, and the network
    still streams exactly at inference (where the block is skipped)."""
    torch.manual_seed(0)
    augment = SpecAugment(freq_masks=2, freq_width=4, time_width=10, frames_per_time_mask=50).train()
    x = torch.randn(3, 16, 400) + 5.0  # no feature is 0 before masking
    masked = augment(x)
    zero_bands = (masked == 0).all(dim=2).sum(dim=1)  # per example
    zero_frames = (masked == 0).all(dim=1).sum(dim=1)
    assert (zero_bands > 0).all() and (zero_frames > 0).all()
    assert not torch.equal(masked[0] == 0, masked[1] == 0)  # each example its own masks
    assert torch.equal(augment.eval()(x), x)

    model = ASRNet(ASRConfig(n_mels=16, width=16, depth=2, layer=LayerSpec(state_dim=4), spec_augment=True))
    model = model.double().eval()
    clip = 0.3 * torch.randn(1, 3001, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(stream(model, clip, random.Random(3)), model(clip)) < 1e-9
        model.train()
        assert not torch.allclose(model(clip), model.eval()(clip))
