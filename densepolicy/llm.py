"""The one LLM client: asynchronous chat completions against an OpenAI-compatible server.

Works the same against vLLM and `transformers serve`. Some servers ignore `n` and stop strings,
so `n` is fanned out into separate requests and stop strings are also applied client-side.
Connection errors, timeouts and 5xx are retried with backoff for up to `retry_seconds`, so a
server that restarts mid-run costs a wait, not a failed task.
"""
import asyncio
import random
import time
from dataclasses import dataclass, field

import openai


class LLMUnavailable(RuntimeError):
    """The server could not be reached or kept failing for longer than the retry window."""


class ContextExceeded(RuntimeError):
    """The prompt no longer fits the model's context window."""


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop", "length" or "stop_string" (cut client-side)
    prompt_tokens: int
    completion_tokens: int


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    def tokens_per_second(self) -> float:
        return self.completion_tokens / max(time.monotonic() - self.started, 1e-9)


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Cut `text` before the earliest stop string (servers that ignore `stop` overrun it)."""
    cut = min((i for i in (text.find(s) for s in stop or []) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


_RETRYABLE = (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError,
              openai.RateLimitError)
_CONTEXT_HINTS = ("maximum context length", "context length", "too long", "max_model_len")


class LLMClient:
    def __init__(self, base_url: str, model: str, *, max_concurrency: int = 64,
                 retry_seconds: float = 600.0, request_timeout: float = 900.0):
        self.base_url = base_url
        self.model = model
        self.retry_seconds = retry_seconds
        self.stats = ClientStats()
        self._limit = asyncio.Semaphore(max_concurrency)
        # The openai client retries a little on its own; we own the retry policy instead.
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0,
                                          timeout=request_timeout)

    async def chat(self, messages: list[dict], *, temperature: float = 0.0, max_tokens: int = 512,
                   stop: list[str] | None = None, n: int = 1, seed: int | None = None
                   ) -> list[Completion]:
        if n > 1:  # some servers ignore `n`: always one request per completion
            batches = await asyncio.gather(*[
                self.chat(messages, temperature=temperature, max_tokens=max_tokens, stop=stop,
                          seed=None if seed is None else seed + i) for i in range(n)])
            return [c for batch in batches for c in batch]
        extra = {"seed": seed} if seed is not None else {}
        response = await self._request(messages=messages, temperature=temperature,
                                       max_tokens=max_tokens, stop=stop or None, n=n, **extra)
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        out = []
        for choice in response.choices:
            text, was_cut = cut_at_stop(choice.message.content or "", stop)
            out.append(Completion(text, "stop_string" if was_cut else (choice.finish_reason or "stop"),
                                  prompt_tokens, completion_tokens // max(len(response.choices), 1)))
        return out

    async def _request(self, **kwargs):
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.5
        while True:
            try:
                async with self._limit:
                    self.stats.requests += 1
                    return await self._client.chat.completions.create(model=self.model, **kwargs)
            except openai.BadRequestError as e:
                if any(h in str(e).lower() for h in _CONTEXT_HINTS):
                    raise ContextExceeded(str(e)) from e
                raise LLMUnavailable(f"{self.base_url} rejected the request: {e}") from e
            except openai.NotFoundError as e:
                raise LLMUnavailable(f"{self.base_url} does not serve model {self.model!r}: {e}") from e
            except _RETRYABLE as e:
                if time.monotonic() + delay > deadline:
                    raise LLMUnavailable(
                        f"model server at {self.base_url} unreachable or failing for "
                        f"{self.retry_seconds:.0f}s: {type(e).__name__}: {e}") from e
                self.stats.retries += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 15.0)

    async def close(self):
        await self._client.close()
