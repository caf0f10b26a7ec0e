"""Weight-only int8 / int4 linear: accuracy, frozen weights, gradients to inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hanlin.quant import QuantLinear, quantize_model, quantized_bytes


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm() / b.norm()).detach())


@pytest.mark.parametrize(("bits", "bound"), [(8, 0.01), (4, 0.12)])
def test_output_close_to_fp32(bits: int, bound: float) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(256, 96, bias=True)
    q = QuantLinear.from_linear(linear, bits=bits, group_size=32)
    x = torch.randn(8, 256)
    err = _rel_err(q(x), linear(x))
    assert err < bound
    # Quantization is lossy: a layer that returned the fp32 output exactly would be a fake.
    assert err > 0


def test_int4_packs_two_codes_per_byte() -> None:
    linear = nn.Linear(128, 64, bias=False)
    q = QuantLinear.from_linear(linear, bits=4, group_size=32)
    assert q.qweight.dtype == torch.uint8
    assert tuple(q.qweight.shape) == (64, 64)
    assert tuple(q.scales.shape) == (64, 4)
    # Every code is reproduced exactly when the weight already lies on the 4-bit grid.
    again = QuantLinear.from_linear(nn.Linear(128, 64, bias=False), bits=4, group_size=32)
    again.load_weight(q.dequantize())
    assert torch.allclose(again.dequantize(), q.dequantize(), atol=1e-3)


@pytest.mark.parametrize("bits", [8, 4])
def test_frozen_weights_and_gradient_to_inputs(bits: int) -> None:
    torch.manual_seed(1)
    q = QuantLinear.from_linear(nn.Linear(64, 32), bits=bits, group_size=32)
    assert list(q.parameters()) == []
    # A LoRA-style trainable branch on top of the frozen quantized base.
    a = nn.Parameter(torch.randn(4, 64) * 0.1)
    b = nn.Parameter(torch.randn(32, 4) * 0.1)
    x = torch.randn(5, 64, requires_grad=True)
    y = q(x) + x @ a.T @ b.T
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert a.grad is not None and a.grad.abs().sum() > 0
    before = q.qweight.clone()
    torch.optim.SGD([a, b], lr=0.1).step()
    assert torch.equal(q.qweight, before)


def test_state_dict_round_trip() -> None:
    q = QuantLinear.from_linear(nn.Linear(64, 16), bits=4, group_size=32)
    other = QuantLinear(64, 16, bits=4, group_size=32, bias=True)
    other.load_state_dict(q.state_dict())
    x = torch.randn(3, 64)
    assert torch.equal(other(x), q(x))


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="bits"):
        QuantLinear(64, 16, bits=3)
    with pytest.raises(ValueError, match="group_size"):
        QuantLinear(60, 16, bits=4, group_size=32)


def test_quantize_model_replaces_linears_and_keeps_head() -> None:
    model = nn.Sequential()
    model.add_module("body", nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)))
    model.add_module("lm_head", nn.Linear(64, 10))
    before = quantized_bytes(model)
    quantize_model(model, bits=8)
    assert isinstance(model.body[0], QuantLinear) and isinstance(model.body[2], QuantLinear)
    assert isinstance(model.lm_head, nn.Linear)
    assert quantized_bytes(model) < before


@pytest.mark.parametrize("bits", [8, 4])
def test_cpu_kernel_matches_the_reference_dequantization(bits: int) -> None:
    # The int4 kernel's convention is w = (q - 8) * scale + zero: a wrong zero point
    # shifts every weight by 8 steps and fails this by far.
    torch.manual_seed(2)
    q = QuantLinear.from_linear(nn.Linear(256, 192, bias=True), bits=bits, group_size=32)
    x = torch.randn(5, 256).bfloat16()
    reference = q(x.float())
    assert q.pack_for_cpu()
    assert q.packed_for_cpu and q.read_bytes() < quantized_bytes(q)
    fast = q(x)
    assert fast.dtype == torch.bfloat16
    assert _rel_err(fast.float(), reference) < 0.01
    # A 3-d input is flattened for the kernel and reshaped back.
    assert torch.equal(q(x.reshape(5, 1, 256)).reshape(5, 192), fast)
    # fp32 inputs still take the exact reference path.
    assert torch.equal(q(x.float()), reference)


def test_dropping_the_reference_layout_keeps_one_copy() -> None:
    torch.manual_seed(3)
    q = QuantLinear.from_linear(nn.Linear(128, 64, bias=False), bits=4, group_size=32)
    x = torch.randn(2, 128)
    reference = q(x)
    q.pack_for_cpu(drop_reference=True)
    # Only the kernel layout remains: what the layer holds is what a forward reads.
    assert q.reference_dropped and quantized_bytes(q) == q.read_bytes()
    # Other dtypes go through the kernel in bf16.
    assert _rel_err(q(x), reference) < 0.01
    with pytest.raises(RuntimeError, match="packed"):
        q.dequantize()
