"""Linear layers whose weights are pre-packed for oneDNN, the CPU's fast matmul path.

`F.linear` on the CPU goes to MKL's GEMM/GEMV with the weight in its plain
layout. For the skinny matmuls of decoding (a few to a few dozen rows) oneDNN
with the weight reordered once into its blocked layout is much faster: on a
2-core AVX-512 machine, 2-3.7x for fp32 at 1 to 300 rows and about 2x for
bf16 at 3 to 50 rows (equal at 1), measured on weights that do not fit the
cache. torch ships both operators (`mkldnn._reorder_linear_weight`,
`mkldnn._linear_pointwise`); they are what its compiler's CPU freezing pass
emits. Results equal `F.linear` to rounding.
"""

from __future__ import annotations

import torch
from torch import nn

# The row count oneDNN tunes the packed layout for; any row count runs. 16 was
# as fast as 1 at one row and faster from three rows up (fp32 and bf16).
PACK_ROWS_HINT = 16


def can_pack(dtype: torch.dtype, device: torch.device | str = "cpu") -> bool:
    """Whether weights of `dtype` on `device` can use oneDNN packed matmuls here."""
    available: bool = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    return (
        torch.device(device).type == "cpu"
        and dtype in (torch.float32, torch.bfloat16)
        and bool(torch.backends.mkldnn.enabled)
        and available
    )


class PackedLinear(nn.Module):
    """`y = x W^T + b` with W held in oneDNN's packed layout (inference only)."""

    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = (int(n) for n in weight.shape)
        self.dtype = weight.dtype
        # An opaque oneDNN tensor: kept off the module's buffers (no state_dict, no .to()).
        self.packed = torch.ops.mkldnn._reorder_linear_weight(
            weight.detach().contiguous(), PACK_ROWS_HINT
        )
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> PackedLinear:
        """Pack an `nn.Linear`'s weight (and bias)."""
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
            x, self.packed, self.bias, "none", [], ""
        )
        return y

    def read_bytes(self) -> int:
        """Bytes of weights (and bias) one forward reads."""
        size = self.in_features * self.out_features * self.dtype.itemsize
        if self.bias is not None:
            size += self.bias.numel() * self.bias.element_size()
        return size

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed"
