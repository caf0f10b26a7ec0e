"""Resumable checkpoints under `<output>/checkpoints/step-NNNNNNNN`.

A checkpoint holds the trained parameters (all, or the adapter's), optimizer and
scheduler state, every rank's RNG states and the data position. It is written
to a local directory and published with a manifest, so a checkpoint either
exists completely or not at all; resuming picks the newest complete one.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hanlin import storage
from hanlin.storage import StorageURI

PREFIX = "step-"


@dataclass
class TrainState:
    """Where training is: optimizer steps done and the data position."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    tokens: int = 0


def rng_state() -> dict[str, Any]:
    """This process's random states (python, torch CPU, and CUDA if present)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_uri(output: StorageURI, step: int) -> StorageURI:
    """Where the checkpoint of `step` lives."""
    return output.join("checkpoints", f"{PREFIX}{step:08d}")


def complete_steps(output: StorageURI) -> list[int]:
    """Steps that have a complete (published) checkpoint, oldest first."""
    steps = set()
    for key in storage.list_keys(output.join("checkpoints")):
        name, _, rest = key.partition("/")
        if rest == storage.MANIFEST and name.startswith(PREFIX):
            steps.add(int(name[len(PREFIX) :]))
    return sorted(steps)


def save_checkpoint(
    output: StorageURI,
    state: TrainState,
    params: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    rng_states: list[dict[str, Any]],
    keep: int,
) -> StorageURI:
    """Publish a checkpoint, then delete all but the newest `keep`.

    `params` are full (unsharded) tensors; `optim_state` holds the optimizer's and
    scheduler's state dicts and how the optimizer state is laid out.
    """
    target = checkpoint_uri(output, state.step)
    with tempfile.TemporaryDirectory(prefix="hanlin-ckpt-") as tmp:
        d = Path(tmp)
        save_file({k: v.contiguous() for k, v in params.items()}, str(d / "params.safetensors"))
        torch.save(optim_state, d / "optim.pt")
        torch.save(rng_states, d / "rng.pt")
        (d / "state.json").write_text(json.dumps(state.__dict__))
        storage.publish_dir(d, target, metadata={"kind": "checkpoint", "step": state.step})
    for old in complete_steps(output)[:-keep]:
        storage.delete(checkpoint_uri(output, old))
    return target


@dataclass
class Loaded:
    """A checkpoint read back."""

    state: TrainState
    params: dict[str, torch.Tensor]
    optim: dict[str, Any]
    rng_states: list[dict[str, Any]]


def load_latest(output: StorageURI, cache: Path) -> Loaded | None:
    """The newest complete checkpoint, or None when there is none."""
    steps = complete_steps(output)
    if not steps:
        return None
    dest = cache / f"{PREFIX}{steps[-1]:08d}"
    storage.fetch_dir(checkpoint_uri(output, steps[-1]), dest)
    state = TrainState(**json.loads((dest / "state.json").read_text()))
    # Our own files, written by save_checkpoint: optimizer state needs full pickle.
    optim = torch.load(dest / "optim.pt", weights_only=False)
    rng = torch.load(dest / "rng.pt", weights_only=False)
    return Loaded(state, load_file(str(dest / "params.safetensors")), optim, rng)
