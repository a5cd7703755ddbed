"""Model forward time, ours / timm's, on the same random weights in the same
process, and the cost of ``capture_attention`` relative to a plain forward.

    python benchmarks/bench_models.py [--models swin_t tf_efficientnetv2_s] [--batches 1 8]
                                      [--repeats 40] [--budget 20] [--json PATH]

Timings are medians of interleaved runs (ours, timm, ours, timm, ...), so a
machine that gets busier or quieter affects both sides alike; each cell runs
at least 3 rounds and stops after ``--budget`` seconds or ``--repeats`` rounds.
Ours runs as the app runs it (``models.prepare_for_inference``: the
EfficientNets with BatchNorm folded and channels-last), timm's as it comes.
Prints a Markdown table; ratios < 1 mean we are faster. EfficientNet-Lite0's
twin is timm's ``tf_efficientnet_lite0`` (TensorFlow padding, as ours).
Attention capture is timed at the batch sizes of ``--capture-batches`` (the
app captures one image at a time).
"""
from __future__ import annotations

import argparse

import torch

import models
from benchmarks.common import in_worker_thread, interleaved_ms, load_average, machine, median, write_json
from benchmarks.timm_reference import calibrate_batchnorm

DEFAULT_MODELS = ["swin_tiny_patch4_window7_224", "swin_base_patch4_window12_384", "tf_efficientnetv2_s",
                  "efficientnet_lite0"]


def timm_twin(name: str):
    """timm's model and ours with the same (random) weights."""
    import timm

    spec = models.get_spec(name)
    reference = timm.create_model(spec.name if spec.hf_hub_id else "tf_efficientnet_lite0").eval()
    calibrate_batchnorm(reference, torch.Generator().manual_seed(0), 224)
    ours = models.create_model(name)
    models.load_timm_state_dict(ours, reference.state_dict())
    return models.prepare_for_inference(ours), reference  # as the app runs it


def capture_forward(model):
    def run(x):
        with models.capture_attention(model):
            return model(x)
    return run


def main(argv=None) -> list[dict]:
    """Measure on a worker thread, as the app runs its models (see common.in_worker_thread)."""
    return in_worker_thread(measure, argv)


def measure(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--capture-batches", nargs="*", type=int, default=[1])
    parser.add_argument("--repeats", type=int, default=40, help="timed rounds per cell at most (batch 1; a third "
                        "of it for larger batches)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timed rounds per cell")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows, about = [], machine()
    about["load_average_start"] = load_average()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| model | batch | ours ms | timm ms | ours / timm | capture ms | capture / plain |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        ours, reference = timm_twin(name)
        _, h, w = ours.spec.input_size
        for batch in args.batches:
            x = torch.randn(batch, 3, h, w)
            fns = {"ours": lambda: ours(x), "timm": lambda: reference(x)}
            if ours.spec.is_swin and batch in args.capture_batches:
                fns["capture"] = lambda: capture_forward(ours)(x)
            with torch.inference_mode():
                agree = bool((ours(x).argmax(-1) == reference(x).argmax(-1)).all())
                samples = interleaved_ms(fns, min_rounds=3, max_rounds=args.repeats if batch == 1 else
                                         max(3, args.repeats // 3), budget_s=args.budget)
            t = {k: median(v) for k, v in samples.items()}
            row = dict(model=name, batch=batch, rounds=len(samples["ours"]), ours=t["ours"], timm=t["timm"],
                       ratio=t["ours"] / t["timm"], fastest_ratio=min(samples["ours"]) / min(samples["timm"]),
                       capture=t.get("capture"),
                       capture_ratio=t["capture"] / t["ours"] if "capture" in t else None, top1_agrees=agree)
            rows.append(row)
            capture = f"{row['capture']:.1f} | {row['capture_ratio']:.3f}" if row["capture"] else "- | -"
            print(f"| {name} | {batch} | {row['ours']:.1f} | {row['timm']:.1f} | {row['ratio']:.3f} | {capture} |",
                  flush=True)
            about["load_average_end"] = load_average()
            write_json(args.json, dict(machine=about, rows=rows))  # after each row: a cut-off run keeps its rows
        del ours, reference
    return rows


if __name__ == "__main__":
    main()
