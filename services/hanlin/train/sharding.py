"""Data parallelism across processes: DDP (whole model per process) or FSDP.

With `spec.hyperparameters.sharding: fsdp` each decoder layer and then the loss
wrapper are sharded with FSDP2 (`fully_shard`): every process keeps a slice of
the parameters, gradients and optimizer state and gathers a layer's weights only
while it runs. The wrapper is the FSDP root, not the HF model, because the loss
calls the decoder and the output head directly rather than the model's forward;
the root's hooks gather what lies outside the layers (embeddings, final norm,
the tied head) around the wrapper's forward.

Checkpoints and the output hold full, unsharded tensors (gathered to rank 0), so
a job can resume on a different number of processes and the result is a plain
HF model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from hanlin.train.distributed import World
from hanlin.train.modeling import ModelError, load_trainable_state, trainable_state

# The loss wrapper keeps the HF model under this attribute; FQNs carry it as a prefix.
INNER = "model."


class Parallel:
    """The module to run forward/backward through, and how to sync and save it."""

    def __init__(self, wrapper: nn.Module, model: nn.Module, world: World, sharding: str) -> None:
        self.model = model
        self.world = world
        self.fsdp = sharding == "fsdp" and world.size > 1
        self.module: nn.Module = wrapper
        if self.fsdp:
            _fully_shard(wrapper, model)
        elif world.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [world.device.index] if world.device.type == "cuda" else None
            self.module = DistributedDataParallel(wrapper, device_ids=ids)

    @property
    def kind(self) -> str:
        """How checkpointed optimizer state is laid out: "fsdp" (by name) or "none"."""
        return "fsdp" if self.fsdp else "none"

    @contextlib.contextmanager
    def sync(self, enabled: bool) -> Iterator[None]:
        """Reduce gradients across processes in this backward only when `enabled`."""
        if self.world.size == 1 or enabled:
            if self.fsdp:
                self.module.set_requires_gradient_sync(True)  # type: ignore[operator]
            yield
        elif self.fsdp:
            self.module.set_requires_gradient_sync(False)  # type: ignore[operator]
            yield
        else:
            with self.module.no_sync():  # type: ignore[operator]
                yield

    def full_params(self) -> dict[str, torch.Tensor]:
        """The trained parameters as full tensors (on rank 0; collective under FSDP)."""
        if not self.fsdp:
            return trainable_state(self.model)
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        full = self.full_model_state()
        return {n: full[n] for n in names if n in full}

    def full_model_state(self) -> dict[str, torch.Tensor]:
        """The HF model's whole state dict, unsharded on rank 0 (FSDP only; collective)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(self.module, options=_full_options())
        out = {
            k[len(INNER) :]: v
            for k, v in full.items()
            if k.startswith(INNER) and isinstance(v, torch.Tensor)
        }
        # Gathering unties tied weights (embeddings and head) into two copies; tie
        # them again so the saved model is laid out as an unsharded one would be.
        first: dict[int, str] = {}
        for name, p in self.model.named_parameters(remove_duplicate=False):
            owner = first.setdefault(id(p), name)
            if owner != name and owner in out and name in out:
                out[name] = out[owner]
        return out

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's state; under FSDP unsharded and keyed by parameter name (collective)."""
        if not self.fsdp:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.module, optimizer, options=_full_options())

    def load(
        self,
        params: dict[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        optim_state: dict[str, Any],
    ) -> None:
        """Restore full parameters and optimizer state (every process has read the checkpoint)."""
        if not self.fsdp:
            load_trainable_state(
                self.model, {k: v.to(self.world.device) for k, v in params.items()}
            )
            optimizer.load_state_dict(optim_state)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        trained = [n for n, p in self.model.named_parameters() if p.requires_grad]
        missing = [n for n in trained if n not in params]
        if missing:
            raise RuntimeError(f"checkpoint lacks trained parameters, e.g. {missing[:3]}")
        # Buffers are not in a checkpoint, so the load is not strict; the check above
        # is what guarantees every trained parameter is restored.
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(
            self.module, {INNER + k: v for k, v in params.items()}, options=options
        )
        set_optimizer_state_dict(self.module, optimizer, optim_state, options=options)


def _full_options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Gathered to rank 0 on the CPU: the other ranks get an empty dict, and no
    # device has to hold the whole model at once.
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _fully_shard(wrapper: nn.Module, model: nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    inner: Any = model
    layers = getattr(inner.get_decoder(), "layers", None)
    if layers is None:
        raise ModelError(
            "spec.hyperparameters.sharding: fsdp needs a decoder with a `layers` list "
            f"({type(model).__name__} has none)"
        )
    for layer in layers:
        fully_shard(layer)
    fully_shard(wrapper)
