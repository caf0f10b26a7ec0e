"""The training loop: one readable loop from global batch to checkpoint.

Loss normalisation is what makes N processes equal one: each optimizer step's
loss is the sum of token losses over the whole global batch divided by the
number of target tokens in that batch (counted across all processes first).
Each process backpropagates its share scaled by the world size, because DDP
and FSDP both average gradients over processes.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from hanlin import storage
from hanlin.api.training_job import TrainingJob, TrainingJobSpec
from hanlin.storage import parse_uri
from hanlin.train import checkpoint
from hanlin.train.distributed import World, all_sum, init_world, shutdown
from hanlin.train.modeling import ModelError, build_model
from hanlin.train.output import write_outputs
from hanlin.train.pipeline import (
    DataPlan,
    Row,
    Source,
    collate,
    count_steps_per_epoch,
    global_batches,
)
from hanlin.train.progress import Reporter
from hanlin.train.sharding import Parallel
from hanlin.train.tokenize import IGNORE


class CausalLMLoss(nn.Module):
    """Summed next-token loss over labelled positions, and their count.

    The output head runs only on positions that have a label: in SFT most tokens
    are prompt, and skipping their vocabulary projection saves time and memory.
    Without a 2-D attention mask, the decoder derives document boundaries from
    the position ids (packed rows attend only within each document).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inner: Any = self.model
        lm: Any = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
        hidden = lm.get_decoder()(
            input_ids=input_ids, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
        loss = F.cross_entropy(logits, targets[keep], reduction="sum")
        return loss, keep.sum()


def _schedule(kind: str, warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _autocast(precision: str, device: torch.device) -> Any:
    if precision == "auto":
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16" if use_bf16 else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "fp16" and device.type != "cuda":
        raise ModelError("spec.hyperparameters.precision: fp16 needs a GPU; use fp32 or auto")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def _fetch_inputs(
    spec: TrainingJobSpec, cache: Path
) -> tuple[Path | None, Path | None, list[Source]]:
    base = None
    if spec.model.uri and not spec.model.uri.startswith("hf://"):
        base = storage.materialize(spec.model.uri, cache / "model", require_manifest=False)
    tok = None
    if spec.model.tokenizer:
        tok = storage.materialize(spec.model.tokenizer, cache / "tokenizer", require_manifest=False)
    sources = []
    for i, d in enumerate(spec.data):
        if d.uri.startswith("hf://"):
            raise ModelError(f"spec.data[{i}].uri: hf:// datasets are not supported offline")
        path = storage.materialize(d.uri, cache / f"data{i}", require_manifest=False)
        sources.append(Source(path, d.format, d.weight))
    return base, tok, sources


@dataclass
class Result:
    """What a finished run produced."""

    artifact: dict[str, Any] | None
    final_loss: float | None
    steps: int
    resumed_from: int
    model: nn.Module | None = None  # the trained model, for callers in this process


def _gather_rng(world: World) -> list[dict[str, Any]]:
    mine = checkpoint.rng_state()
    if world.size == 1:
        return [mine]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, mine)
    return out


def _micro_batches(rows: list[Row], world: World, batch: int) -> list[list[Row]]:
    share = len(rows) // world.size
    mine = rows[world.rank * share : (world.rank + 1) * share]
    return [mine[i : i + batch] for i in range(0, len(mine), batch)]


def train(job: TrainingJob, workdir: Path | None = None) -> Result:
    """Run a TrainingJob in this process (one rank of it under torchrun).

    Downloads and resume state go under `workdir` (or $HANLIN_WORK_DIR); with
    neither, a temporary directory that is removed at the end.
    """
    world = init_world()
    try:
        with contextlib.ExitStack() as stack:
            if workdir is None and os.environ.get("HANLIN_WORK_DIR"):
                workdir = Path(os.environ["HANLIN_WORK_DIR"])
            if workdir is None:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="hanlin-train-"))
                workdir = Path(tmp)
            return _train(job.spec, world, workdir)
    finally:
        shutdown(world)


def _train(spec: TrainingJobSpec, world: World, workdir: Path) -> Result:
    hp = spec.hyperparameters
    cache = workdir / f"rank{world.rank}"
    output = parse_uri(spec.output.uri)
    base_dir, tok_dir, sources = _fetch_inputs(spec, cache)
    built = build_model(spec, base_dir, tok_dir)
    model = built.model.to(world.device)
    model.train()
    tokenizer = built.tokenizer
    plan = DataPlan(
        sources=sources,
        seq_len=hp.seq_len,
        packing=hp.packing,
        split_documents=spec.method != "sft",
        seed=hp.seed,
        rows_per_step=hp.batch_size * hp.gradient_accumulation * world.size,
    )
    if hp.max_steps is not None:
        total, per_epoch = hp.max_steps, None
    else:
        per_epoch = count_steps_per_epoch(plan, tokenizer)
        if per_epoch == 0:
            raise ModelError(
                "spec.data: fewer rows than one global batch "
                f"({plan.rows_per_step}); add data or lower spec.hyperparameters.batchSize"
            )
        total = per_epoch * (hp.epochs or 1)
    # Sharding replaces the parameters, so it comes before the optimizer sees them.
    parallel = Parallel(CausalLMLoss(model), model, world, hp.sharding)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(hp.lr_scheduler, hp.warmup_steps, total)
    )
    state = checkpoint.TrainState()
    loaded = checkpoint.load_latest(output, cache / "resume")
    if loaded is not None:
        written = loaded.optim.get("sharding", "none")
        if written != parallel.kind:
            raise ModelError(
                f"spec.hyperparameters.sharding: the checkpoint at step {loaded.state.step} was "
                f"written with sharding {written} across processes; resume it the same way"
            )
        parallel.load(loaded.params, optimizer, loaded.optim["optimizer"])
        scheduler.load_state_dict(loaded.optim["scheduler"])
        state = loaded.state
        rngs = loaded.rng_states
        checkpoint.set_rng_state(rngs[world.rank] if len(rngs) == world.size else rngs[0])
    else:
        # Same weights everywhere (seeded above); different dropout per process.
        torch.manual_seed(hp.seed + world.rank)
    resumed_from = state.step
    loss_module = parallel.module
    autocast = _autocast(hp.precision, world.device)
    reporter = Reporter(total, state.step, world.main)
    try:
        if loaded is not None:
            reporter.emit({"event": "resumed", "step": state.step, "totalSteps": total})
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        every = spec.checkpoint.every_steps
        last_loss = None
        batches = global_batches(plan, tokenizer, state.epoch, state.step_in_epoch)
        while state.step < total:
            epoch, in_epoch, rows = next(batches)
            t0 = time.perf_counter()
            mine = _micro_batches(rows, world, hp.batch_size)
            micro = [collate(m, pad) for m in mine]
            local_targets = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
            local_tokens = sum(len(r.input_ids) for m in mine for r in m)  # padding excluded
            global_targets = max(1.0, all_sum([float(local_targets)], world)[0])
            loss_sum = 0.0
            for i, b in enumerate(micro):
                b = {k: v.to(world.device) for k, v in b.items()}
                # Gradients are all-reduced once per optimizer step, on the last micro-batch.
                with parallel.sync(i == len(micro) - 1), autocast():
                    loss, _ = loss_module(b["input_ids"], b["position_ids"], b["labels"])
                (loss * world.size / global_targets).backward()
                loss_sum += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total_loss, tokens = all_sum([loss_sum, float(local_tokens)], world)
            last_loss = total_loss / global_targets
            state.step += 1
            state.epoch, state.step_in_epoch = epoch, in_epoch + 1
            state.tokens += int(tokens)
            frac = epoch + (in_epoch + 1) / per_epoch if per_epoch else float(epoch)
            reporter.report(state.step, last_loss, lr, int(tokens), time.perf_counter() - t0, frac)
            if (every and state.step % every == 0) or state.step == total:
                rngs = _gather_rng(world)
                if world.main or parallel.fsdp:  # gathering sharded state takes every process
                    trained = parallel.full_params()
                    optim_state = {
                        "optimizer": parallel.optimizer_state(optimizer),
                        "scheduler": scheduler.state_dict(),
                        "sharding": parallel.kind,
                    }
                if world.main:
                    checkpoint.save_checkpoint(
                        output, state, trained, optim_state, rngs, spec.checkpoint.keep
                    )
                    reporter.metrics.checkpoints.inc()
                if world.size > 1:
                    dist.barrier()
        artifact = None
        full = parallel.full_model_state() if parallel.fsdp else None
        if world.main:
            artifact = write_outputs(built, spec, output, full)
            reporter.artifact(artifact)
            reporter.emit(
                {"event": "done", "step": state.step, "totalSteps": total, "artifact": artifact}
            )
    finally:
        reporter.close()
    if world.size > 1:
        dist.barrier()
    return Result(artifact, last_loss, state.step, resumed_from, model)
