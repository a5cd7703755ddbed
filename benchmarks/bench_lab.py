"""Forward + backward time of each Swin attention variant of the attention
lab, as a ratio to the ``fused`` attention on the same model.

    python -m benchmarks.bench_lab [--rounds 15] [--budget 40] [--threads 1] [--append]

Two models: the lab's small Swin on its 16 x 16 digits (batch 64, as the
recorded comparison trains it) and the seed's CIFAR Swin (``swin_cifar``,
32 x 32, batch 2). One timed call is a training step without the optimiser:
forward, cross-entropy, backward. Variants run interleaved (fused,
separate, ..., fused, separate, ...) so that the machine's load moves them
alike; each figure is a median. Prints a Markdown section; ``--append``
also writes it into ``benchmarks/RESULTS.md`` (replacing an earlier one);
``benchmarks/run_all.py`` (``make bench``) runs it that way after its own sections.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

import models
from benchmarks.common import ROOT, interleaved_ms, load_average, machine, markdown_table, median
from models.swin_attention import ATTENTION_VARIANTS
from training.lab import LabConfig

HEADING = "## Attention lab: forward + backward, each variant / fused"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def setups() -> list[tuple[str, dict, tuple[int, int, int, int]]]:
    lab = LabConfig()
    return [
        (f"lab Swin (embedding {lab.embed_dim}, depths {tuple(lab.depths)}), 16 x 16, batch 64",
         lab.swin_options(), (64, 3, lab.image_size, lab.image_size)),
        ("swin_cifar (embedding 192, depths (2, 6, 2)), 32 x 32, batch 2", {"drop_path_rate": 0.0}, (2, 3, 32, 32)),
    ]


def step(model, x, y):
    def run():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    return run


def measure(rounds: int, budget: float) -> list[dict]:
    rows = []
    for label, options, shape in setups():
        torch.manual_seed(0)
        x, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
        fns = {}
        for variant in ATTENTION_VARIANTS:
            torch.manual_seed(0)
            model = models.create_model("swin_cifar", num_classes=10, attention=variant, **options).train()
            fns[variant] = step(model, x, y)
        samples = interleaved_ms(fns, min_rounds=3, max_rounds=rounds, budget_s=budget, warmup=1)
        base = median(samples["fused"])
        for variant, ms in samples.items():
            rows.append(dict(model=label, variant=variant, rounds=len(ms), ms=median(ms), ratio=median(ms) / base))
    return rows


def section(rows: list[dict], info: dict, loads: tuple) -> str:
    table = markdown_table(
        ["model", "variant", "rounds", "ms (median)", "variant / fused"],
        [[r["model"], r["variant"], r["rounds"], f"{r['ms']:.1f}", f"**{r['ratio']:.2f}**"] for r in rows])
    return "\n".join([
        HEADING,
        "",
        "`benchmarks/bench_lab.py`: one training step without the optimiser (forward, cross-entropy, backward) of",
        "each attention variant of `models.swin_attention`, the same model otherwise, same random input;",
        "variants interleaved, medians; ratio to `fused` (the checkpoints' layout) measured in the same rounds.",
        "The three `parameter_*` rows run the same operations on differently drawn numbers: their spread is",
        "the noise of these figures.",
        f"torch {info['torch']} with {info['torch_threads']} thread(s), {info['cores']} cores, commit "
        f"{info.get('commit', '?')}; 1-minute load average {loads[0]} -> {loads[1]}.",
        "",
        table,
        "",
    ])


def append(text: str, path: Path = RESULTS) -> None:
    """Put ``text`` in place of an earlier section with the same heading, or at the end."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if HEADING in old:
        before, _, rest = old.partition(HEADING)
        after = rest.split("\n## ", 1)
        old = before.rstrip("\n") + "\n\n" + (("## " + after[1]) if len(after) > 1 else "")
    path.write_text(old.rstrip("\n") + "\n\n" + text, encoding="utf-8")


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--budget", type=float, default=40.0, help="seconds of timed rounds per model, at most")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--append", action="store_true", help="also write the section into --output")
    p.add_argument("--output", default=str(RESULTS), help="the results file --append writes into")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start_load = load_average()
    rows = measure(args.rounds, args.budget)
    text = section(rows, machine(), (start_load, load_average()))
    print(text)
    if args.append:
        append(text, Path(args.output))
    return text


if __name__ == "__main__":
    main()
