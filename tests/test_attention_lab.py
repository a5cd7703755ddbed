"""The attention lab's measurements and its command: initialisation
statistics against values worked out by hand for one head in one window,
and ``python -m training lab`` end to end in a tiny configuration."""
import csv
import math

import pytest
import torch

from models.swin import SwinTransformer
from models.swin_attention import with_attention
from training.__main__ import main
from training.lab import init_statistics


# Tiny models: on a busy 2-core machine a second thread only waits for the
# first (a lab step took 2 s with 2 threads, 0.1 s with one).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The hand case: one stage, one block, one head, a 2 x 2 map = one window (no
# shift, no mask), 2 channels. Token i is (s_i, -s_i) with signs
# s = (+1, +1, +1, -1); both LayerNorms (eps 0) leave such a token as it is.
# q_i = (a s_i, 0) and k_j = (s_j, 0), head dim 2, so the logit of (i, j) is
# c s_i s_j with c = a / sqrt(2) (the bias table is zero).
SIGNS = (1.0, 1.0, 1.0, -1.0)
C = 4.0


def hand_model(attention="fused", v_scale=1.0):
    torch.manual_seed(0)
    model = SwinTransformer(patch_size=1, in_chans=2, num_classes=2, embed_dim=2, depths=(1,), num_heads=(1,),
                            window_size=2, mlp_ratio=1.0, drop_path_rate=0.0)
    block = model.layers[0].blocks[0]
    with torch.no_grad():
        model.patch_embed.proj.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        model.patch_embed.proj.bias.zero_()
        model.patch_embed.norm.eps = block.norm1.eps = 0.0
        qkv = torch.zeros(6, 2)
        qkv[0, 0] = C * math.sqrt(2)  # q = (a s, 0)
        qkv[2, 0] = 1.0               # k = (s, 0)
        qkv[4:] = v_scale * torch.tensor([[1.0, 0.5], [-0.5, 1.0]])
        block.attn.qkv.weight.copy_(qkv)
        block.attn.qkv.bias.zero_()
        block.attn.relative_position_bias_table.zero_()
        block.attn.proj.weight.copy_(torch.eye(2))
        model.head.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0]]))
    # A LayerNorm over 2 channels is a sign function (gradient ~0): the
    # final one would hide the gradient that the statistics measure.
    model.norm = torch.nn.Identity()
    return model if attention == "fused" else with_attention(model, attention)


def hand_images():
    s = torch.tensor(SIGNS).view(2, 2)
    return torch.stack([s, -s])[None], torch.tensor([1])  # [1, 2, 2, 2]: pixel (y, x) = (s, -s)


def row_entropy(logit_three, logit_one):
    """Entropy of a row with three keys at one logit and one at another."""
    z = 3 * math.exp(logit_three) + math.exp(logit_one)
    p3, p1 = math.exp(logit_three) / z, math.exp(logit_one) / z
    return -(3 * p3 * math.log(p3) + p1 * math.log(p1)), max(p3, p1)


@pytest.mark.parametrize("attention", ["fused", "separate", "heads_first", "parameter_randn"])
def test_init_statistics_of_one_head_in_one_window_are_the_hand_values(attention):
    # Of the 16 logits, 10 are +c and 6 are -c: mean c / 4, variance c^2 - c^2 / 16.
    expected_std = C * math.sqrt(15) / 4
    # Rows of the three + tokens: three keys at +c, one at -c; the - token's row: three at -c, one at +c.
    entropy_plus, max_plus = row_entropy(C, -C)
    entropy_minus, max_minus = row_entropy(-C, C)
    expected_entropy = (3 * entropy_plus + entropy_minus) / 4 / math.log(4)
    assert max_plus < 0.34 and max_minus > 0.99  # so one row in four is saturated
    images, labels = hand_images()
    model = hand_model(attention)
    stats = init_statistics(model, images, labels)
    assert stats.logit_std == pytest.approx(expected_std, rel=1e-5)
    assert stats.entropy_fraction == pytest.approx(expected_entropy, rel=1e-5)
    assert stats.saturated_rows == 0.25
    # The gradient reaching q and k is the one autograd gives the q, k rows of the fused weight.
    reference = hand_model()
    torch.nn.functional.cross_entropy(reference(images), labels).backward()
    qk = reference.layers[0].blocks[0].attn.qkv.weight.grad[:4]
    assert stats.qk_grad_norm == pytest.approx(qk.norm().item(), rel=1e-4) and stats.qk_grad_norm > 1e-4
    assert all(p.grad is None for p in model.parameters())  # the statistics leave no gradients behind


def test_no_gradient_reaches_q_and_k_when_v_is_zero():
    """With v = 0 the attention's output is zero whatever q and k are."""
    images, labels = hand_images()
    stats = init_statistics(hand_model(v_scale=0.0), images, labels)
    assert stats.qk_grad_norm == 0.0 and stats.saturated_rows == 0.25


def test_the_lab_command_writes_its_report(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["lab", "--out", str(out), "--variants", "fused,parameter_randn,primer_shared", "--seeds", "2",
                 "--epochs", "1", "--max-steps", "2", "--init-batch", "8", "--image-size", "8",
                 "--embed-dim", "8", "--num-heads", "1,2"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"results.md", "results.csv", "curves.png", "init_statistics.csv",
                                               "runs.json", "config.json"}
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["fused", "parameter_randn", "primer_shared"]
    assert all(r["seeds"] == "2" and 0 <= float(r["final_val_accuracy_mean"]) <= 1 for r in rows)
    with open(out / "init_statistics.csv", newline="") as f:
        init = {r["variant"]: r for r in csv.DictReader(f)}
    assert float(init["parameter_randn"]["logit_std"]) > 0  # measured, whatever it is
    markdown = (out / "results.md").read_text()
    assert "python -m training lab --out" in markdown and "| primer_shared | 2 |" in markdown
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_the_lab_command_refuses_an_unknown_variant_in_one_sentence(tmp_path, capsys):
    assert main(["lab", "--out", str(tmp_path / "r"), "--variants", "fused,flash"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown attention variant 'flash'; choose from: fused,") and err.count("\n") == 0
    assert not (tmp_path / "r").exists()
