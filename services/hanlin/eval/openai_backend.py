"""Any OpenAI-compatible endpoint (a ModelDeployment, vLLM, LMDeploy, ...) as the model.

ppl: `/v1/completions` with `echo`, `logprobs` and `max_tokens: 0` returns the
log-prob of every prompt token; the continuation's tokens are those starting
at or after the end of the context (by `text_offset`), exactly the split a
local tokenizer makes when no token straddles the boundary.
gen: `/v1/chat/completions` for chat prompts, `/v1/completions` otherwise,
temperature 0. Requests run concurrently; connection errors, 429 and 5xx are
retried with exponential backoff.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from hanlin.eval.backend import (
    ContinuationScore,
    GenerateRequest,
    LoglikelihoodRequest,
    cut_at_stop,
)

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """The endpoint refused a request or answered in an unexpected shape."""


class OpenAIBackend:
    """Talks to `base_url` (with or without the trailing /v1) as `model`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 300.0,
    ) -> None:
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.name = model
        self.model = model
        self.concurrency = max(1, concurrency)
        self.retries = retries
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            headers=headers,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=self.concurrency),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.post(url, json=body)
            except httpx.TransportError as err:
                if attempt == self.retries:
                    raise EndpointError(f"POST {url}: {err}") from None
            else:
                if resp.status_code == 200:
                    data: dict[str, Any] = resp.json()
                    return data
                if resp.status_code not in _RETRY_STATUS or attempt == self.retries:
                    raise EndpointError(f"POST {url}: HTTP {resp.status_code}: {resp.text[:500]}")
            time.sleep(self.backoff_s * 2**attempt)
        raise EndpointError(f"POST {url}: no answer after {self.retries} retries")

    def _map(self, fn: Any, items: list[Any]) -> list[Any]:
        if self.concurrency == 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(fn, items))

    def _score_one(self, job: tuple[str, str]) -> ContinuationScore:
        context, continuation = job
        # Trailing context spaces belong to the continuation, as in lm-eval.
        head = context.rstrip()
        prompt = context + continuation
        data = self._post(
            "/completions",
            {
                "model": self.model,
                "prompt": prompt,
                "echo": True,
                "logprobs": 1,
                "max_tokens": 0,
                "temperature": 0.0,
            },
        )
        try:
            lp = data["choices"][0]["logprobs"]
            offsets: list[int] = lp["text_offset"]
            values: list[float | None] = lp["token_logprobs"]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(
                f"{self.base_url}/completions: the answer has no echoed logprobs "
                "(the server must support echo with logprobs)"
            ) from None
        total, count = 0.0, 0
        for i, (off, val) in enumerate(zip(offsets, values, strict=True)):
            # A token ending inside the context belongs to it; later ones past
            # the prompt would be generated text, which max_tokens 0 excludes.
            end = offsets[i + 1] if i + 1 < len(offsets) else len(prompt)
            if end <= len(head) or off >= len(prompt):
                continue
            if val is None:
                raise EndpointError(f"{self.base_url}/completions: no logprob for a scored token")
            total += float(val)
            count += 1
        return ContinuationScore(total, count)

    def loglikelihoods(
        self, requests: list[LoglikelihoodRequest], chat: bool
    ) -> list[list[ContinuationScore]]:
        """One completions request per (prompt, continuation), run concurrently."""
        if chat:
            raise EndpointError(
                "applyChatTemplate with ppl mode needs the model's tokenizer: evaluate the "
                "model by uri, or use gen mode for an endpoint"
            )
        jobs = [(r.prompt.plain(), c) for r in requests for c in r.continuations]
        flat = self._map(self._score_one, jobs)
        out: list[list[ContinuationScore]] = []
        pos = 0
        for r in requests:
            out.append(flat[pos : pos + len(r.continuations)])
            pos += len(r.continuations)
        return out

    def _generate_one(self, job: tuple[GenerateRequest, bool]) -> str:
        req, chat = job
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_new_tokens,
            "temperature": 0.0,
        }
        if req.stop:
            body["stop"] = list(req.stop)
        if chat:
            body["messages"] = req.prompt.messages()
            data = self._post("/chat/completions", body)
            text = data["choices"][0]["message"]["content"] or ""
        else:
            body["prompt"] = req.prompt.plain()
            data = self._post("/completions", body)
            text = data["choices"][0]["text"]
        return cut_at_stop(str(text), req.stop)

    def generate(self, requests: list[GenerateRequest], chat: bool) -> list[str]:
        """Greedy answers, run concurrently."""
        return [str(t) for t in self._map(self._generate_one, [(r, chat) for r in requests])]
