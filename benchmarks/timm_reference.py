"""timm reference models with random weights, for the benchmarks and the parity tests."""
import torch

BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def calibrate_batchnorm(model: torch.nn.Module, generator: torch.Generator, size: int) -> None:
    """Running statistics measured on random ``size`` x ``size`` images, as
    training would leave them: per-channel, informative, and keeping
    activations of order one through a deep random network (so that fp32
    rounding stays small, and timings are those of real weights: no
    overflow, no denormals)."""
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, size, size, generator=generator))
    model.eval()
