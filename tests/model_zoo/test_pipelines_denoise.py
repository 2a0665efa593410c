"""The denoising rules: a stream ends with as many samples out as went in, the same samples as the whole clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo.nets import build_network
from model_zoo.nets.blocks import LayerSpec
from model_zoo.pipelines.denoise import padded_length, stream_end


@pytest.fixture(scope="module")
def denoiser() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("denoise", channels=(4, 8), factors=(4, 4), layer=LayerSpec(mode="dws", state_dim=4),
                         bottleneck=LayerSpec(mode="s5", state_dim=4, blocks=2)).double().eval()


def test_lengths_round_up_to_whole_blocks(denoiser) -> None:
    block = denoiser.block_length
    assert [padded_length(denoiser, n) for n in (0, 1, block, block + 1)] == [0, block, block, 2 * block]


@pytest.mark.parametrize("length", [1, 37, 1000, 1283])
@pytest.mark.parametrize("handed_out", [False, True])
def test_a_stream_ends_with_the_rest_of_the_whole_clip(denoiser, length: int, handed_out: bool) -> None:
    """Chunks in; outputs either kept (a long upload) or handed out as they come (a live stream); the end gives
    the rest, so the stream's output is the whole clip's, sample for sample in number."""
    clip = torch.randn(1, length, dtype=torch.float64)
    with torch.no_grad():
        whole = denoiser(clip)[0].numpy()
        state, kept, out = denoiser.init_state(1), [], []
        for start in range(0, length, 300):
            y, state = denoiser.step(clip[:, start:start + 300], state)
            (out if handed_out else kept).append(y[0].numpy())
    emitted = sum(len(y) for y in out)
    rest, _ = stream_end(denoiser, state, kept, length, emitted)
    got = np.concatenate([*out, rest])
    assert len(rest) == length - emitted and got.shape == whole.shape
    assert np.allclose(got, whole, atol=1e-6)  # the end comes back as float32, like every step


def test_the_recognizer_hears_the_enhanced_audio_with_part_of_the_input_put_back():
    from model_zoo.pipelines.denoise import NOISY_SHARE_FOR_RECOGNIZER, for_recognizer

    noisy, denoised = np.full(4, 1.0), np.zeros(4, dtype=np.float32)
    mixed = for_recognizer(noisy, denoised)
    assert mixed.dtype == np.float32 and mixed.shape == (4,)
    assert 0 < NOISY_SHARE_FOR_RECOGNIZER < 1
    np.testing.assert_allclose(mixed, NOISY_SHARE_FOR_RECOGNIZER)
