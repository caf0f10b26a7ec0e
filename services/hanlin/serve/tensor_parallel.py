"""Tensor parallelism: N processes, each holding a shard, stepping in lockstep.

The group talks over gloo on the CPU and over NCCL on CUDA (rank r on GPU r).

Rank 0 is the serving process: it schedules, builds each step's inputs,
broadcasts them, runs its own shard and samples. Ranks 1..N-1 are worker
processes that only run their shard. Inside the model, attention heads and the
MLP's intermediate columns are split (column-parallel), and the two output
projections are row-parallel with one all-reduce each, so every rank ends a
layer with the full hidden state.
"""

from __future__ import annotations

import multiprocessing
import socket
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from hanlin.serve.config import EngineConfig
from hanlin.serve.model import LlamaModel, TensorParallel, load_model
from hanlin.serve.runner import ModelRunner, StepInputs

_INIT_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _init(rank: int, size: int, port: int, device: torch.device) -> None:
    from datetime import timedelta

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=size,
        timeout=timedelta(seconds=_INIT_TIMEOUT_S),
    )


def _load(config: EngineConfig, rank: int) -> LlamaModel:
    tp = TensorParallel(rank, config.tensor_parallel)
    return load_model(
        Path(config.model),
        tp=tp,
        quantization=config.quantization,
        adapters=config.adapters,
        dtype=config.torch_dtype(),
        device=config.torch_device(rank),
    )


def _worker(rank: int, port: int, config: EngineConfig, threads: int) -> None:
    torch.set_num_threads(threads)
    _init(rank, config.tensor_parallel, port, config.torch_device(rank))
    model = _load(config, rank)
    sizes: list[Any] = [None]
    dist.broadcast_object_list(sizes, src=0)
    runner = ModelRunner(model, int(sizes[0]), config.block_size)
    if config.lora_adapters:
        from hanlin.serve.lora import attach_lora

        runner.lora = attach_lora(
            model, list(config.lora_adapters.items()), model.embed.weight.dtype
        )
    while True:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0)
        inputs = box[0]
        if inputs is None:
            break
        # Only rank 0 samples: skip the output head here.
        inputs.logit_rows = inputs.logit_rows[:0]
        runner.execute(inputs)
    dist.destroy_process_group()


@dataclass
class TensorParallelGroup:
    """Rank 0's handle on the worker processes."""

    model: LlamaModel
    workers: list[BaseProcess]

    @classmethod
    def start(cls, config: EngineConfig) -> TensorParallelGroup:
        """Spawn ranks 1..N-1, join the group as rank 0 and load this rank's shard."""
        size = config.tensor_parallel
        port = _free_port()
        threads = max(1, torch.get_num_threads() // size)
        ctx = multiprocessing.get_context("spawn")
        workers: list[BaseProcess] = []
        for rank in range(1, size):
            p = ctx.Process(target=_worker, args=(rank, port, config, threads), daemon=True)
            p.start()
            workers.append(p)
        torch.set_num_threads(threads)
        _init(0, size, port, config.torch_device(0))
        return cls(_load(config, 0), workers)

    def init_cache(self, num_blocks: int) -> None:
        """Tell the workers how many KV blocks to allocate (rank 0 decides)."""
        dist.broadcast_object_list([num_blocks], src=0)

    def execute(self, inputs: StepInputs, runner: ModelRunner) -> torch.Tensor:
        """Run one step on every rank; return rank 0's logits."""
        dist.broadcast_object_list([inputs], src=0)
        return runner.execute(inputs)

    def shutdown(self) -> None:
        """Stop the workers and leave the group."""
        if dist.is_initialized():
            dist.broadcast_object_list([None], src=0)
            dist.destroy_process_group()
        for p in self.workers:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
