"""Model forward time, ours / timm's, on the same random weights in the same
process, and the cost of ``capture_attention`` relative to a plain forward.

    python benchmarks/bench_models.py [--models swin_t tf_efficientnetv2_s] [--batches 1 8] [--repeats 15]

Timings are medians of interleaved runs (ours, timm, ours, timm, ...), so a
machine that gets busier or quieter affects both sides alike. Prints a
Markdown table; ratios < 1 mean we are faster.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import models  # noqa: E402

DEFAULT_MODELS = ["swin_tiny_patch4_window7_224", "tf_efficientnetv2_s"]


def timm_twin(name: str):
    """timm's model and ours with the same (random) weights."""
    import timm

    spec = models.get_spec(name)
    reference = timm.create_model(spec.name if spec.hf_hub_id else "tf_efficientnet_lite0").eval()
    ours = models.create_model(name)
    if spec.is_swin:
        state = models.swin.convert_timm_state_dict(reference.state_dict())
    else:
        state = models.efficientnet.convert_timm_state_dict(reference.state_dict(), ours)
    models.hub.load_state_dict_strict(ours, state, "timm")
    return ours, reference


def median_ms(fn, x, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def interleaved(fns: dict, x, repeats: int, warmup: int = 3) -> dict:
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn(x)
        samples = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                start = time.perf_counter()
                fn(x)
                samples[k].append((time.perf_counter() - start) * 1000)
    return {k: statistics.median(v) for k, v in samples.items()}


def capture_forward(model):
    def run(x):
        with models.capture_attention(model):
            return model(x)
    return run


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| model | batch | ours ms | timm ms | ours / timm | capture ms | capture / plain |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        ours, reference = timm_twin(name)
        _, h, w = ours.spec.input_size
        for batch in args.batches:
            x = torch.randn(batch, 3, h, w)
            fns = {"ours": ours, "timm": reference}
            if ours.spec.is_swin:
                fns["capture"] = capture_forward(ours)
            t = interleaved(fns, x, args.repeats if batch == 1 else max(5, args.repeats // 3))
            row = dict(model=name, batch=batch, ours=t["ours"], timm=t["timm"], ratio=t["ours"] / t["timm"],
                       capture=t.get("capture"), capture_ratio=t["capture"] / t["ours"] if "capture" in t else None)
            rows.append(row)
            capture = f"{row['capture']:.1f} | {row['capture_ratio']:.3f}" if row["capture"] else "- | -"
            print(f"| {name} | {batch} | {row['ours']:.1f} | {row['timm']:.1f} | {row['ratio']:.3f} | {capture} |",
                  flush=True)
    return rows


if __name__ == "__main__":
    main()
