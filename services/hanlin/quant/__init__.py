"""Weight-only quantization: int8 per output channel and int4 group-wise.

Shared by serving (smaller weights) and QLoRA training (a frozen quantized base).

Use::

    from hanlin.quant import quantize_model, QuantLinear

    quantize_model(model, bits=4, group_size=64)   # replaces nn.Linear in place
    layer = QuantLinear.from_linear(nn.Linear(576, 1536), bits=8)

`QuantLinear` keeps its packed weight, scales and zero points as *buffers*:
they are frozen (no gradient, not returned by `parameters()`), move with
`.to(device)` and are saved in `state_dict()`. Its forward dequantizes to the
input's dtype and calls `F.linear`, so autograd flows to the *inputs*: a LoRA
branch added around a `QuantLinear` (``y = base(x) + B(A(dropout(x))) * scale``)
trains normally while the base stays quantized. It exposes `in_features`,
`out_features` and a (dequantized) `weight`, which is what adapter code reads.
`QuantLinear.weight` returns the dequantized fp32 weight (read-only view for
code that inspects shapes or merges adapters).

Serving calls `QuantLinear.pack_for_cpu()`: bf16 inputs on the CPU then run
torch's fused weight-only kernels (``_weight_int4pack_mm_for_cpu``,
``_weight_int8pack_mm``), which read the weight once at 4/8 bits instead of
dequantizing it every call (int4 there uses ``w = (q - 8) * scale + zero``,
``zero = min + 8 * scale``, bf16 scale and zero).

- int8: symmetric, one fp32 scale per output row: ``w = q * scale``.
- int4: asymmetric per group of `group_size` input columns, two 4-bit codes per
  byte, fp16 scale and minimum per group: ``w = q * scale + min``.
"""

from hanlin.quant.linear import QuantLinear, quantize_model, quantized_bytes

__all__ = ["QuantLinear", "quantize_model", "quantized_bytes"]
