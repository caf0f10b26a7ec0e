"""Processes: one, or many under torchrun (gloo on CPU, nccl on GPU).

`hanlin train` started by hand or by a pod is not yet under torchrun; when the
job wants more than one process it re-executes itself through
`torch.distributed.run` with the node layout the operator puts in the env
(NNODES, NODE_RANK, NPROC_PER_NODE, MASTER_ADDR, MASTER_PORT), falling back to
the spec's `resources`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    """This process's place among all training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """The process that logs, checkpoints and writes outputs."""
        return self.rank == 0


def under_torchrun() -> bool:
    """True inside a process torchrun started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch_layout(nodes: int, procs_per_node: int) -> tuple[int, int]:
    """(nodes, processes per node): the operator's env wins over the spec."""
    return (
        int(os.environ.get("NNODES", nodes)),
        int(os.environ.get("NPROC_PER_NODE", procs_per_node)),
    )


def torchrun_argv(spec_path: str, nodes: int, procs_per_node: int) -> list[str]:
    """The command that re-runs `hanlin train` under torchrun."""
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nodes}",
        f"--nproc-per-node={procs_per_node}",
        f"--node-rank={os.environ.get('NODE_RANK', '0')}",
        f"--master-addr={os.environ.get('MASTER_ADDR', '127.0.0.1')}",
        f"--master-port={os.environ.get('MASTER_PORT', '29500')}",
    ]
    return argv + ["-m", "hanlin.cli", "train", "--spec", spec_path]


def init_world() -> World:
    """Join the process group when under torchrun; pick the device."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return World(device=device)
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return World(dist.get_rank(), dist.get_world_size(), local_rank, device)


def all_sum(values: list[float], world: World) -> list[float]:
    """Sum a few numbers over all processes (identity with one process)."""
    if world.size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def shutdown(world: World) -> None:
    """Leave the process group."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
