"""Does denoising help the recognizer? WER on real sentences in held-out noise: as is, denoised, and mixed.

    python bench/denoise_asr.py                        # shipped asr and denoise, SNRs 0, 5, 10 dB
    python bench/denoise_asr.py --mix 0.25,0.5 --snrs 0,5

The set is the real one (:class:`training.datasets.asterisk.AsteriskDenoise`: Asterisk sentences of three words
or more, each mixed with the synthetic corpus's held-out test noise at every SNR). Each noisy clip reaches the
recognizer in every form ``/transcribe`` could give it:

* ``noisy``: as recorded (``denoise=false``);
* ``denoised``: the denoiser's output alone;
* ``mix a``: ``a * noisy + (1 - a) * denoised``: some of the input put back (a denoiser's artefacts are what a
  recognizer trained on noisy speech has never heard, while the residual noise is familiar to it);
* ``clean``: the recording before noise, the bound.

Scores are greedy and default beam-search WER and CER, per SNR and over all, through the same evaluation as
the model cards (``training.tasks``). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import model_zoo  # noqa: E402
from training.datasets import asterisk  # noqa: E402
from training.recipes import RECIPES  # noqa: E402
from training.tasks import TASK_SPECS, pad_collate  # noqa: E402


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--asr", default="asr")
    parser.add_argument("--denoise", default="denoise")
    parser.add_argument("--snrs", default="0,5,10")
    parser.add_argument("--mix", default="0.25,0.5", help="shares of the noisy input mixed back in")
    parser.add_argument("--corpus", default=RECIPES["asr-synthetic"].data_root, help="corpus whose test noise is used")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only")
    args = parser.parse_args()
    os.chdir(ROOT)
    torch.set_num_threads(1)
    recognizer, denoiser = model_zoo.load(args.asr), model_zoo.load(args.denoise)
    snrs = tuple(float(s) for s in args.snrs.split(","))
    mixes = [float(m) for m in args.mix.split(",") if m]
    bank, source = asterisk.heldout_noise_bank(args.corpus)
    data = asterisk.AsteriskDenoise(bank, snrs=snrs)
    count = len(data) if args.limit is None else min(len(data), args.limit * len(snrs))
    forms: dict[str, dict[float, list]] = {}
    for index in range(count):
        noisy, clean = data[index]
        text, snr = data.info(index)["transcript"], snrs[index % len(snrs)]
        denoised = denoiser(noisy[None])[0]
        versions = {"clean": clean, "noisy": noisy, "denoised": denoised}
        versions.update({f"mix {m:g}": m * noisy + (1 - m) * denoised for m in mixes})
        for name, wave in versions.items():
            forms.setdefault(name, {}).setdefault(snr, []).append((wave, text))
    evaluate = TASK_SPECS["asr"].evaluate
    results: dict[str, dict] = {}
    print(f"{count // len(snrs)} sentences x SNRs {snrs}; noise: {source}")
    print(f"{'input':<10} {'SNR':>5} {'WER':>7} {'beam WER':>9} {'CER':>7} {'beam CER':>9}")
    for name, by_snr in forms.items():
        results[name] = {}
        for snr, items in [*by_snr.items(), ("all", [i for v in by_snr.values() for i in v])]:
            loader = DataLoader(items, batch_size=8, collate_fn=pad_collate)
            scores = evaluate(recognizer, loader, torch.device("cpu"), None)
            results[name][str(snr)] = {k: round(v, 4) for k, v in scores.items() if k in ("wer", "cer", "wer_lm", "cer_lm")}
            s = results[name][str(snr)]
            print(f"{name:<10} {snr!s:>5} {s['wer']:>7.3f} {s.get('wer_lm', float('nan')):>9.3f} "
                  f"{s['cer']:>7.3f} {s.get('cer_lm', float('nan')):>9.3f}")
    print(json.dumps({"asr": args.asr, "denoise": args.denoise, "snrs": snrs, "sentences": count // len(snrs),
                      "noise": source, "results": results}))


if __name__ == "__main__":
    main()
