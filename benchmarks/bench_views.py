"""How fast the "Inside Swin" views answer, as ratios to a Swin-T forward
measured in the same run.

    python -c "from benchmarks.bench_views import main; main()"

In this process, as the app runs them (demo.service.InferenceService and
demo.panels.render_swin_panels with the app's drawing cache), Swin-T with
random weights at 224 x 224, interleaved with a bare Swin-T forward (batch
1, every thread). The views' frames (demo/frames.py: drawn once per
architecture and stage for the process's lifetime) are drawn before timing;
their one-off cost is reported apart. The issue's goals: a click (a new
query point) <= 1.0 x a forward; another block or head <= 1.5 x; the first
views of a new image (its forward with attention captured, and every view)
<= 3 x.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import interleaved_ms, load_average, machine, markdown_table, median

SWIN_T = "swin_tiny_patch4_window7_224"
CAT = "assets/examples/cat.jpg"
GOALS = {"click": 1.0, "block": 1.5, "image": 3.0}


def run(rounds: int = 12, budget_s: float = 60.0) -> dict:
    import torch
    from PIL import Image

    from benchmarks.common import ROOT
    from demo import images, panels
    from demo.service import InferenceService, Settings, available_cpus

    threads = available_cpus()
    torch.set_num_threads(threads)
    service = InferenceService(Settings(torch_threads=threads))
    photo = images.load_image(ROOT / CAT)
    forward = service.swin_forward(photo, SWIN_T)
    model, hw = forward.model, forward.model_input.shape[:2]
    x = torch.randn(1, 3, *hw)

    def render(stage, block, head, qx, qy, of=None):
        of = of or forward
        selection = panels.check_selection(model, hw, stage, block, head, qx, qy)
        return panels.render_swin_panels(of, selection, service.drawings)

    start = time.perf_counter()
    for stage in range(len(model.depths)):
        render(stage, 1, "mean", 100, 100)
    frames_s = time.perf_counter() - start

    step = [0]
    rng = np.random.default_rng(0)
    pixels = np.asarray(photo)

    def bare_forward():
        with torch.inference_mode():
            model(x)

    def click():
        step[0] += 1
        render(1, 1, "mean", (17 + 41 * step[0]) % 224, (29 + 67 * step[0]) % 224)

    def block_or_head():
        step[0] += 1
        render(1, step[0] % 2, str(step[0] % 6) if step[0] % 3 else "mean", 100, 100)

    def new_image():
        noisy = np.clip(pixels.astype(np.int16) + rng.integers(-3, 4, pixels.shape), 0, 255).astype(np.uint8)
        other = service.swin_forward(Image.fromarray(noisy), SWIN_T)  # never seen: its own forward
        render(0, 1, "mean", 112, 112, other)

    samples = interleaved_ms({"forward": bare_forward, "click": click, "block": block_or_head, "image": new_image},
                             min_rounds=min(5, rounds), max_rounds=rounds, budget_s=budget_s, warmup=1)
    reference = median(samples["forward"])
    return dict(forward_ms=reference, frames_s=frames_s, threads=threads, machine=machine(),
                load_average=load_average(),
                rows={k: dict(ms=median(v), ratio=median(v) / reference, n=len(v)) for k, v in samples.items()
                      if k != "forward"})


LABELS = {"click": "a click: the query point moves", "block": "another block or head",
          "image": "the first views of a new image (forward with attention captured, every view)"}


def section(r: dict) -> str:
    rows = [[LABELS[k], row["n"], f"{row['ms']:.0f}", f"**{row['ratio']:.2f}**", f"<= {GOALS[k]:.1f}",
             "met" if row["ratio"] <= GOALS[k] else "**not met**"] for k, row in r["rows"].items()]
    return f"""## Swin views, against a Swin-T forward

`benchmarks/bench_views.py`: in one process, as the app draws them (the
views painted into frames drawn once per architecture and stage,
`demo/frames.py`), interleaved with a bare Swin-T forward at batch 1 with
{r['threads']} threads: **{r['forward_ms']:.0f} ms** here (CPU capability
{r['machine']['cpu_capability']}, load average at the end {r['load_average']}).
Drawing the frames of Swin-T's 4 stages, once for the process's lifetime,
took {r['frames_s']:.1f} s.

{markdown_table(["what changes", "samples", "median ms", "/ forward", "goal", ""], rows)}
"""


def main() -> None:
    print(section(run()))


if __name__ == "__main__":
    main()
