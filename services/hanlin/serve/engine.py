"""The engine core: requests in, incremental outputs out, one scheduler step at a time.

`Engine` is synchronous and single-threaded (the Python API drives it
directly); `hanlin.serve.async_engine.AsyncEngine` runs it in a process of its
own for the servers. REST and gRPC both sit on `AsyncEngine`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from hanlin.serve.config import EngineConfig
from hanlin.serve.detokenizer import Detokenizer
from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.guided import GuidedDecoding
from hanlin.serve.kv_cache import BlockManager, available_memory
from hanlin.serve.metrics import EngineMetrics
from hanlin.serve.model import ModelConfig
from hanlin.serve.outputs import Logprob, RequestLimits, RequestOutput
from hanlin.serve.params import SamplingParams
from hanlin.serve.runner import ModelRunner, StepInputs
from hanlin.serve.sampler import process_logits, sample, top_logprobs
from hanlin.serve.scheduler import Scheduler, Sequence, Status


class Engine:
    """Continuous-batching generation over a paged KV cache."""

    def __init__(self, config: EngineConfig, metrics: EngineMetrics | None = None) -> None:
        from transformers import AutoTokenizer

        from hanlin.serve.model import load_model

        self.config = config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(
            config.model, trust_remote_code=config.trust_remote_code
        )
        self.metrics = metrics or EngineMetrics()
        self.tp_group: Any = None
        if config.tensor_parallel > 1:
            from hanlin.serve.tensor_parallel import TensorParallelGroup

            self.tp_group = TensorParallelGroup.start(config)
            model = self.tp_group.model
        else:
            model = load_model(
                config.model,
                quantization=config.quantization,
                adapters=config.adapters,
                dtype=config.torch_dtype(),
                device=config.torch_device(),
            )
        self.model_config = model.cfg
        num_blocks = config.num_blocks or max(
            1,
            self._kv_cache_bytes(model.cfg, ModelRunner.kv_bytes_per_token(model))
            // (ModelRunner.kv_bytes_per_token(model) * config.block_size),
        )
        self.runner = ModelRunner(model, num_blocks, config.block_size)
        self.lora_names = list(config.lora_adapters)
        if config.lora_adapters:
            from hanlin.serve.lora import attach_lora

            self.runner.lora = attach_lora(
                model, list(config.lora_adapters.items()), model.embed.weight.dtype
            )
        if self.tp_group is not None:
            self.tp_group.init_cache(num_blocks)
        capacity = num_blocks * config.block_size
        self.max_model_len = min(
            config.max_model_len or model.cfg.max_position_embeddings,
            model.cfg.max_position_embeddings,
            capacity,
        )
        self.limits = RequestLimits(
            self.max_model_len, model.cfg.vocab_size, tuple(self.lora_names)
        )
        self.blocks = BlockManager(num_blocks, config.block_size, config.prefix_caching)
        self.scheduler = Scheduler(self.blocks, config.max_batch_tokens, config.max_seqs)
        self.seqs: dict[str, Sequence] = {}
        self.eos = set(model.cfg.eos_token_ids)
        if self.tokenizer.eos_token_id is not None:
            self.eos.add(int(self.tokenizer.eos_token_id))
        self.guided = GuidedDecoding(self.tokenizer, model.cfg.vocab_size, self.eos)

    def _kv_cache_bytes(self, cfg: ModelConfig, per_token: int) -> int:
        """The cache budget: fixed bytes, or a fraction of the memory left after the weights."""
        config = self.config
        if config.kv_cache_fraction is None:
            return config.kv_cache_bytes
        device = config.torch_device()
        if device.type == "cuda":
            # Each rank has a GPU of its own: the fraction of its free memory.
            budget = int(config.kv_cache_fraction * torch.cuda.mem_get_info(device)[0])
        else:
            # Tensor-parallel ranks share the host's memory: each takes its share.
            budget = int(config.kv_cache_fraction * available_memory()) // config.tensor_parallel
        # Never more than every running sequence at the longest allowed length needs.
        longest = min(
            config.max_model_len or cfg.max_position_embeddings, cfg.max_position_embeddings
        )
        return min(budget, config.max_seqs * longest * per_token)

    def describe(self) -> str:
        """One line on how the engine runs (logged at startup)."""
        model = self.runner.model
        blocks = self.blocks.num_blocks
        cache_mib = blocks * self.config.block_size * ModelRunner.kv_bytes_per_token(model) / 2**20
        dtype = str(model.embed.weight.dtype).removeprefix("torch.")
        return (
            f"hanlin serve: {self.config.name}: dtype {dtype}, quantization "
            f"{self.config.quantization or 'none'}, KV cache {blocks} blocks x "
            f"{self.config.block_size} tokens ({cache_mib:.0f} MiB), max_model_len "
            f"{self.max_model_len}, device {self.runner.device}, ops {model.ops.name}, "
            f"threads {torch.get_num_threads()}"
        )

    # -- requests ---------------------------------------------------------------------------

    def add_request(
        self,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None = None,
    ) -> None:
        """Validate and queue one sequence (n > 1 is expanded by the caller).

        `adapter` names a LoRA adapter of `EngineConfig.lora_adapters` (None: the base model).
        """
        self.limits.check(prompt_ids, params, adapter)
        if request_id in self.seqs:
            raise RequestError(ErrorCode.INVALID_REQUEST, f"duplicate request id {request_id}")
        seq = Sequence(
            request_id, list(prompt_ids), params, adapter=self.limits.adapter_id(adapter)
        )
        if params.seed is not None:
            seq.generator = torch.Generator().manual_seed(params.seed)
        if params.guide is not None:
            # Made now, so a grammar the tokenizer cannot serve is this request's 400.
            seq.guide_state = self.guided.matcher(params.guide)
        seq.detok = Detokenizer(
            self.tokenizer, seq.prompt_ids, params.stop, params.skip_special_tokens
        )
        self.seqs[request_id] = seq
        self.scheduler.add(seq)
        self.metrics.prompt_tokens.inc(len(seq.prompt_ids))

    def abort(self, request_id: str) -> None:
        """Drop a request and free its blocks (no-op if already gone)."""
        seq = self.seqs.pop(request_id, None)
        if seq is not None and seq.status is not Status.FINISHED:
            self.scheduler.finish(seq, "abort")
            self.metrics.aborted.inc()
            self.metrics.set_state(len(self.scheduler.running), self.num_waiting, self.blocks.usage)

    def has_work(self) -> bool:
        """Whether a step would do anything."""
        return self.scheduler.has_work()

    @property
    def num_waiting(self) -> int:
        """Requests queued, not yet running."""
        return len(self.scheduler.waiting)

    # -- one step ---------------------------------------------------------------------------

    def _inputs(self, work: list[tuple[Sequence, int]]) -> tuple[StepInputs, list[int]]:
        """The model's inputs for `work` (ordered by `_decode_first`) and each logit row's owner."""
        bs = self.config.block_size
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        decode_tables: list[list[int]] = []
        decode_lens: list[int] = []
        prefills: list[tuple[int, int, torch.Tensor]] = []
        logit_rows: list[int] = []
        logit_owner: list[int] = []  # index into work for each logit row
        lora_rows: dict[int, list[int]] = {}
        for i, (seq, n) in enumerate(work):
            start = len(ids)
            if seq.adapter:
                lora_rows.setdefault(seq.adapter - 1, []).extend(range(start, start + n))
            lo, hi = seq.num_computed, seq.num_computed + n
            ids.extend(_token_slice(seq, lo, hi))
            positions.extend(range(lo, hi))
            table = seq.blocks
            if _is_decode(seq, n):
                # A decode token: its one slot here; the context slots come from the
                # block tables below, for all decode sequences at once.
                slots.append(table[lo // bs] * bs + lo % bs)
                decode_tables.append(table)
                decode_lens.append(hi)
            else:
                ctx = _table_slots([table], bs)[0, :hi]
                slots.extend(ctx[lo:hi].tolist())
                prefills.append((start, n, ctx))
            if seq.wants_prompt_logprobs:
                rows = range(start, start + n)
            else:
                rows = range(start + n - 1, start + n) if hi == seq.num_tokens else range(0)
            logit_rows.extend(rows)
            logit_owner.extend([i] * len(rows))
        groups = []
        # The C++ decode kernel reads each context at its own length: one group does.
        paged = self.runner.model.ops.paged_decode
        spans = [(0, len(decode_lens))] if paged and decode_lens else _length_groups(decode_lens)
        for lo, hi in spans:
            width = decode_lens[hi - 1]
            table_slots = _table_slots(decode_tables[lo:hi], bs)[:, :width].contiguous()
            groups.append((table_slots, torch.tensor(decode_lens[lo:hi], dtype=torch.long)))
        inputs = StepInputs(
            input_ids=torch.tensor(ids, dtype=torch.long),
            positions=torch.tensor(positions, dtype=torch.long),
            slot_mapping=torch.tensor(slots, dtype=torch.long),
            decode_groups=groups,
            prefills=prefills,
            logit_rows=torch.tensor(logit_rows, dtype=torch.long),
            lora_groups=[(a, torch.tensor(r, dtype=torch.long)) for a, r in lora_rows.items()],
        )
        return inputs, logit_owner

    def step(self) -> list[RequestOutput]:
        """Schedule, run the model once, sample, and report what changed."""
        batch = self.scheduler.schedule()
        self.metrics.preemptions.inc(len(batch.preempted))
        if not batch.seqs:
            return []
        work = _decode_first(batch.seqs)
        inputs, owner = self._inputs(work)
        logits = (
            self.tp_group.execute(inputs, self.runner)
            if self.tp_group
            else self.runner.execute(inputs)
        )
        rows_of: dict[int, list[int]] = {}
        for row, i in enumerate(owner):
            rows_of.setdefault(i, []).append(row)
        to_sample: list[tuple[Sequence, torch.Tensor]] = []
        outputs: list[RequestOutput] = []
        for i, (seq, n) in enumerate(work):
            rows = rows_of.get(i, [])
            if seq.wants_prompt_logprobs:
                self._prompt_logprobs(seq, n, logits[rows])
            seq.num_computed += n
            self.scheduler.register_full_blocks(seq)
            if seq.num_computed == seq.num_tokens:
                if len(seq.output_ids) >= seq.params.max_tokens:
                    self._finish(seq, "length")
                    outputs.append(self._output(seq, []))
                else:
                    to_sample.append((seq, logits[rows[-1]]))
        if to_sample:
            outputs.extend(self._sample(to_sample))
        self.metrics.set_state(len(self.scheduler.running), self.num_waiting, self.blocks.usage)
        self.metrics.prefix_cache(self.scheduler.prefix_queried, self.scheduler.prefix_hit)
        return outputs

    def _prompt_logprobs(self, seq: Sequence, n: int, logits: torch.Tensor) -> None:
        """Record logprobs of the prompt tokens these rows predict (the first token: None)."""
        k = seq.params.prompt_logprobs or 0
        if not seq.prompt_logprobs:
            seq.prompt_logprobs.append(None)
        lp = torch.log_softmax(logits, dim=-1)
        for j in range(n):
            pos = seq.num_computed + j  # row j predicts token pos + 1
            if pos + 1 != len(seq.prompt_logprobs) or pos + 1 >= len(seq.prompt_ids):
                continue
            seq.prompt_logprobs.append(top_logprobs(lp[j], seq.prompt_ids[pos + 1], k))

    def _sample(self, items: list[tuple[Sequence, torch.Tensor]]) -> list[RequestOutput]:
        seqs = [s for s, _ in items]
        logits = torch.stack([row for _, row in items])
        params = [s.params for s in seqs]
        chosen_from = process_logits(
            logits,
            params,
            [(s.prompt_ids, s.output_ids) for s in seqs],
            [self._stop_ids(s.params) for s in seqs],
        )
        matchers = [s.guide_state for s in seqs]
        if any(m is not None for m in matchers):
            chosen_from = self._guide(logits, chosen_from, matchers)
        tokens = sample(chosen_from, params, [s.generator for s in seqs])
        want_lp = any(s.params.logprobs is not None for s in seqs)
        # Logprobs are the model's own distribution (vLLM's default), not the processed one.
        logprobs = torch.log_softmax(logits, dim=-1) if want_lp else None
        now = time.monotonic()
        outputs = []
        for j, (seq, token) in enumerate(zip(seqs, tokens, strict=True)):
            seq.output_ids.append(token)
            self.metrics.generation_tokens.inc()
            if seq.first_token_time is None:
                seq.first_token_time = now
                self.metrics.ttft.observe(now - seq.arrival)
            new_lp: list[Logprob] = []
            if logprobs is not None and seq.params.logprobs is not None:
                new_lp.append(top_logprobs(logprobs[j], token, seq.params.logprobs))
                seq.output_logprobs.extend(new_lp)
            p = seq.params
            reason: str | None = None
            if token in p.stop_token_ids or (token in self.eos and not p.ignore_eos):
                reason = "stop"
            elif seq.detok.add(token):
                reason = "stop"
            elif matchers[j] is not None and self.guided.advance(matchers[j], token):
                reason = "stop"  # the grammar is complete
            elif len(seq.output_ids) >= p.max_tokens or seq.num_tokens >= self.max_model_len:
                reason = "length"
            if reason:
                self._finish(seq, reason)
            outputs.append(self._output(seq, [token], new_lp))
        return outputs

    def _guide(
        self, raw: torch.Tensor, processed: torch.Tensor, matchers: list[Any]
    ) -> torch.Tensor:
        """Mask what each guided row's grammar forbids (after the other processors).

        Should the two together forbid every token (min_tokens barring the end a finished
        grammar allows), the grammar wins: that row is chosen from its grammar alone.
        """
        out = processed.clone() if processed is raw else processed
        self.guided.mask(matchers, out)
        for row, m in enumerate(matchers):
            if m is not None and bool(torch.isneginf(out[row]).all()):
                only = raw[row : row + 1].clone()
                self.guided.mask([m], only)
                out[row] = only[0]
        return out

    def _stop_ids(self, p: SamplingParams) -> set[int]:
        """The tokens that would end a sequence: what `min_tokens` bars."""
        if not p.min_tokens:
            return set()
        return set(p.stop_token_ids) | (set() if p.ignore_eos else self.eos)

    def _finish(self, seq: Sequence, reason: str) -> None:
        self.scheduler.finish(seq, reason)
        self.seqs.pop(seq.request_id, None)
        now = time.monotonic()
        self.metrics.e2e.observe(now - seq.arrival)
        self.metrics.finished.labels(reason).inc()
        if seq.first_token_time is not None and len(seq.output_ids) > 1:
            self.metrics.tpot.observe((now - seq.first_token_time) / (len(seq.output_ids) - 1))

    def _output(
        self,
        seq: Sequence,
        tokens: list[int],
        new_lp: list[Logprob] | None = None,
    ) -> RequestOutput:
        finished = seq.status is Status.FINISHED
        prompt_lp: list[Logprob | None] | None = None
        if seq.params.prompt_logprobs is not None and not seq.prompt_logprobs_sent:
            prompt_lp = list(seq.prompt_logprobs)
            seq.prompt_logprobs_sent = True
        return RequestOutput(
            request_id=seq.request_id,
            token_ids=tokens,
            text=seq.detok.delta(finished),
            finished=finished,
            finish_reason=seq.finish_reason,
            prompt_tokens=len(seq.prompt_ids),
            completion_tokens=len(seq.output_ids),
            logprobs=new_lp or [],
            prompt_logprobs=prompt_lp,
            cached_tokens=seq.cached_tokens,
        )

    def shutdown(self) -> None:
        """Stop tensor-parallel workers, if any."""
        if self.tp_group is not None:
            self.tp_group.shutdown()
            self.tp_group = None


# Padding slots a separate decode-attention group must save to pay for its own kernel
# calls (~30 us a layer against ~0.07-0.11 us a gathered context slot, bf16/fp32).
GROUP_SAVING_SLOTS = 384


def _decode_first(work: list[tuple[Sequence, int]]) -> list[tuple[Sequence, int]]:
    """Decode tokens first, shortest context first (see `_length_groups`), then prefills."""
    decode = [w for w in work if _is_decode(*w)]
    if not decode:
        return work
    decode.sort(key=lambda w: w[0].num_computed)
    return decode + [w for w in work if not _is_decode(*w)]


def _is_decode(seq: Sequence, n: int) -> bool:
    """One new token after a computed context: attention reads the context from the cache."""
    return n == 1 and seq.num_computed > 0


def _length_groups(lens: list[int]) -> list[tuple[int, int]]:
    """Split ascending context lengths into [lo, hi) groups padded to their longest.

    A group closes before a length whose jump, times the rows already in the group,
    would pad more than `GROUP_SAVING_SLOTS` slots.
    """
    groups = []
    lo = 0
    for j in range(1, len(lens)):
        if (j - lo) * (lens[j] - lens[j - 1]) > GROUP_SAVING_SLOTS:
            groups.append((lo, j))
            lo = j
    if lens:
        groups.append((lo, len(lens)))
    return groups


def _token_slice(seq: Sequence, lo: int, hi: int) -> list[int]:
    """Tokens [lo, hi) of prompt + output, without concatenating the whole sequence."""
    p = len(seq.prompt_ids)
    if lo >= p:
        return seq.output_ids[lo - p : hi - p]
    if hi <= p:
        return seq.prompt_ids[lo:hi]
    return seq.prompt_ids[lo:] + seq.output_ids[: hi - p]


def _table_slots(tables: list[list[int]], block_size: int) -> torch.Tensor:
    """Cache slot of every position covered by each block table ([N, blocks * block_size]).

    Shorter tables are padded with block 0; callers cut or mask the padding.
    """
    blocks = max((len(t) for t in tables), default=0)
    padded = torch.tensor([t + [0] * (blocks - len(t)) for t in tables], dtype=torch.long)
    padded = padded.reshape(len(tables), blocks)
    offsets = torch.arange(block_size, dtype=torch.long)
    return (padded[:, :, None] * block_size + offsets).reshape(len(tables), blocks * block_size)
