"""The quantized linear layer and the pass that swaps it into a model."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_BITS = (4, 8)
# Inner-K tiling the CPU int4 kernel's packed layout is built for (its only supported value).
_INT4_INNER_K_TILES = 2


def cpu_kernels_available() -> bool:
    """Whether this torch has the CPU weight-only int4/int8 matmul kernels."""
    aten = torch.ops.aten
    return all(
        hasattr(aten, name)
        for name in (
            "_weight_int4pack_mm_for_cpu",
            "_convert_weight_to_int4pack_for_cpu",
            "_weight_int8pack_mm",
        )
    )


def _quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def _quantize_int4(
    weight: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out_f, in_f = weight.shape
    w = weight.detach().float().reshape(out_f, in_f // group_size, group_size)
    lo = w.amin(dim=-1)
    hi = w.amax(dim=-1)
    # Store scale/min in fp16 and quantize against the rounded values, so the
    # codes are chosen for the numbers the forward pass will actually use.
    scale = ((hi - lo).clamp(min=1e-8) / 15.0).half()
    lo16 = lo.half()
    q = torch.round((w - lo16.float()[..., None]) / scale.float()[..., None]).clamp(0, 15)
    q = q.to(torch.uint8).reshape(out_f, in_f)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)
    return packed.contiguous(), scale, lo16


class QuantLinear(nn.Module):
    """A frozen weight-only quantized `nn.Linear` (int8 per channel or int4 group-wise)."""

    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    bias: torch.Tensor | None
    packed: torch.Tensor
    packed_scales: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bits: int,
        group_size: int = 64,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if bits not in SUPPORTED_BITS:
            raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits}")
        if bits == 4 and (group_size <= 0 or group_size % 2 or in_features % group_size):
            raise ValueError(
                f"group_size must be even and divide in_features={in_features}, got {group_size}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.bits = bits
        self.group_size = group_size
        if bits == 8:
            self.register_buffer(
                "qweight", torch.zeros(out_features, in_features, dtype=torch.int8)
            )
            self.register_buffer("scales", torch.ones(out_features))
            self.register_buffer("zeros", torch.zeros(0))
        else:
            groups = in_features // group_size
            self.register_buffer(
                "qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8)
            )
            self.register_buffer("scales", torch.ones(out_features, groups, dtype=torch.float16))
            self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.float16))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features))
        else:
            self.bias = None
        # The CPU kernels' layout, built by `pack_for_cpu` (serving only; not saved).
        self.register_buffer("packed", torch.zeros(0, dtype=torch.uint8), persistent=False)
        self.register_buffer("packed_scales", torch.zeros(0), persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, group_size: int = 64) -> QuantLinear:
        """Quantize an existing `nn.Linear` (its weight is copied, not kept)."""
        layer = cls(
            linear.in_features, linear.out_features, bits, group_size, linear.bias is not None
        )
        layer.load_weight(linear.weight, linear.bias)
        return layer.to(linear.weight.device)

    @torch.no_grad()
    def load_weight(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Quantize `weight` (out_features x in_features) into this layer's buffers."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"weight shape {tuple(weight.shape)} != ({self.out_features}, {self.in_features})"
            )
        if self.bits == 8:
            q, scale = _quantize_int8(weight)
            self.qweight.copy_(q)
            self.scales.copy_(scale)
        else:
            packed, scale, lo = _quantize_int4(weight, self.group_size)
            self.qweight.copy_(packed)
            self.scales.copy_(scale)
            self.zeros.copy_(lo)
        if bias is not None and self.bias is not None:
            self.bias.copy_(bias.detach())

    @torch.no_grad()
    def pack_for_cpu(self, drop_reference: bool = False) -> bool:
        """Build the layout of torch's CPU int4/int8 kernels; return whether it was built.

        After this, a bf16 input on the CPU runs the fused kernel (the weight is read
        once, at 4 or 8 bits) instead of dequantizing the whole weight every call.
        int4 uses the kernel's convention ``w = (q - 8) * scale + zero`` with bf16
        scale and zero, so ``zero = min + 8 * scale`` rounded to bf16; int8 rounds the
        per-row scale to bf16. Both roundings are far below one quantization step.
        Other inputs (fp32, CUDA, autograd) keep the dequantizing path, unless
        `drop_reference` freed the int4 codes in their reference layout (a server
        that only ever computes in bf16 keeps one copy): then they are cast to bf16
        for the kernel, and `dequantize`/`weight`/`state_dict` are unavailable.
        """
        if not cpu_kernels_available() or self.qweight.device.type != "cpu":
            return False
        if self.bits == 8:
            self.packed = self.qweight
            self.packed_scales = self.scales.to(torch.bfloat16)
            return True
        codes = self._codes().reshape(self.out_features, self.in_features).to(torch.int32)
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            codes.contiguous(), _INT4_INNER_K_TILES
        )
        scale = self.scales.float()
        zero = self.zeros.float() + 8.0 * scale
        # [groups, out_features, 2]: the kernel's scales-and-zeros layout.
        self.packed_scales = torch.stack((scale.t(), zero.t()), dim=-1).to(torch.bfloat16)
        self.packed_scales = self.packed_scales.contiguous()
        if drop_reference:
            self.qweight = torch.zeros(0, dtype=torch.uint8)
            self.scales = torch.zeros(0, dtype=self.scales.dtype)
            self.zeros = torch.zeros(0, dtype=self.zeros.dtype)
        return True

    @property
    def reference_dropped(self) -> bool:
        """Whether `pack_for_cpu(drop_reference=True)` freed the reference int4 codes."""
        return self.qweight.numel() == 0

    @property
    def packed_for_cpu(self) -> bool:
        """Whether `pack_for_cpu` has built the kernel layout."""
        return self.packed.numel() > 0

    def read_bytes(self) -> int:
        """Bytes one forward pass streams for the weight (the kernel's layout when packed)."""
        if self.packed_for_cpu:
            tensors = [self.packed, self.packed_scales]
        else:
            tensors = [self.qweight, self.scales, self.zeros]
        if self.bias is not None:
            tensors.append(self.bias)
        return sum(t.numel() * t.element_size() for t in tensors)

    def _codes(self) -> torch.Tensor:
        low = self.qweight & 0x0F
        high = self.qweight >> 4
        return torch.stack((low, high), dim=-1).reshape(
            self.out_features, self.in_features // self.group_size, self.group_size
        )

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight as a dense tensor of `dtype`."""
        if self.reference_dropped:
            raise RuntimeError("this QuantLinear keeps only the CPU kernel layout (packed)")
        if self.bits == 8:
            return self.qweight.to(dtype) * self.scales.to(dtype)[:, None]
        q = self._codes()
        w = q.to(dtype) * self.scales.to(dtype)[..., None] + self.zeros.to(dtype)[..., None]
        return w.reshape(self.out_features, self.in_features)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (fp32), for inspection and adapter merging."""
        return self.dequantize(torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.packed_for_cpu
            and x.dtype == torch.bfloat16
            and x.device.type == "cpu"
            and not (x.requires_grad and torch.is_grad_enabled())
        ):
            return self._kernel_forward(x)
        if self.reference_dropped:
            return self._kernel_forward(x.to(torch.bfloat16)).to(x.dtype)
        if self.bits == 8:
            # Scale after the matmul: one multiply per output instead of per weight.
            y = F.linear(x, self.qweight.to(x.dtype)) * self.scales.to(x.dtype)
        else:
            y = F.linear(x, self.dequantize(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y

    def _kernel_forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y: torch.Tensor
        if self.bits == 8:
            y = torch.ops.aten._weight_int8pack_mm(flat, self.packed, self.packed_scales)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                flat, self.packed, self.group_size, self.packed_scales
            )
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bits={self.bits}, group_size={self.group_size if self.bits == 4 else None}"
        )


def quantize_model(
    model: nn.Module,
    bits: int,
    group_size: int = 64,
    skip: Iterable[str] = ("lm_head",),
) -> nn.Module:
    """Replace every `nn.Linear` in `model` (in place) by a `QuantLinear`; return `model`.

    Modules whose qualified name ends with one of `skip` stay full precision
    (by default the output head, which is often tied to the embedding). A
    linear whose input width is not a multiple of `group_size` (int4) is kept too.
    """
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits}")
    skipped = tuple(skip)
    targets: list[tuple[nn.Module, str, nn.Linear]] = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if not isinstance(child, nn.Linear) or full.endswith(skipped):
                continue
            if bits == 4 and child.in_features % group_size:
                continue
            targets.append((module, child_name, child))
    for parent, child_name, child in targets:
        setattr(parent, child_name, QuantLinear.from_linear(child, bits, group_size))
    return model


def quantized_bytes(model: nn.Module) -> int:
    """Bytes held by a model's parameters and buffers (to measure the saving)."""
    tensors = list(model.parameters()) + list(model.buffers())
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    for module in model.modules():
        # Weights packed for oneDNN are opaque tensors held outside the buffers.
        packed = getattr(module, "packed", None)
        if isinstance(packed, torch.Tensor) and packed.layout != torch.strided:
            total += packed.numel() * packed.element_size()
    return total
