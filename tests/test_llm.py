"""The LLM client against the real embedded model behind a real vLLM CPU server (the launcher's)."""
import asyncio
import time

import pytest

from conftest import free_port
from densepolicy.llm import LLMClient, LLMUnavailable, cut_at_stop

COUNT = [{"role": "user", "content": "Count from 1 to 30, separated by commas."}]


def test_cut_at_stop_takes_the_earliest():
    assert cut_at_stop("a End Action b Observation:", ["Observation:", "End Action"]) == ("a ", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)
    assert cut_at_stop("abc", None) == ("abc", False)


def test_greedy_stop_strings_and_fan_out(model_server):
    base_url, served = model_server

    async def go():
        client = LLMClient(base_url, served)
        [full] = await client.chat(COUNT, temperature=0.0, max_tokens=60)
        assert len(full.text) > 10 and full.completion_tokens > 0
        # Greedy output stops exactly before the stop string: vLLM stops there itself ("stop"),
        # and a server that ignores `stop` is cut by the client ("stop_string"); both count.
        stop = full.text[len(full.text) // 2:len(full.text) // 2 + 3]
        [cut] = await client.chat(COUNT, temperature=0.0, max_tokens=60, stop=[stop])
        assert cut.text == full.text[:full.text.find(stop)] and cut.finish_reason in ("stop", "stop_string")
        assert stop not in cut.text
        # `n` is fanned out by the client (some servers ignore it). Temperature 1.0 really samples (the
        # tree's siblings depend on it), temperature 0 really is greedy.
        word = [{"role": "user", "content": "Write one random word."}]
        many = await client.chat(word, temperature=1.0, max_tokens=12, n=4)
        assert len(many) == 4 and all(c.text for c in many)
        assert len({c.text for c in many}) > 1
        greedy = await client.chat(word, temperature=0.0, max_tokens=12, n=2)
        assert greedy[0].text == greedy[1].text
        assert client.stats.completion_tokens > 0 and client.stats.requests == 8
        await client.close()

    asyncio.run(go())


def test_many_requests_in_flight(model_server):
    base_url, served = model_server

    async def go():
        client = LLMClient(base_url, served, max_concurrency=8)
        outs = await asyncio.gather(*[client.chat([{"role": "user", "content": f"Say {i}."}],
                                                  max_tokens=8) for i in range(8)])
        await client.close()
        return outs

    assert all(len(o) == 1 for o in asyncio.run(go()))


def test_unreachable_server_fails_with_a_clear_message():
    url = f"http://127.0.0.1:{free_port()}/v1"

    async def go():
        client = LLMClient(url, "m", retry_seconds=2)
        try:
            await client.chat(COUNT, max_tokens=5)
        finally:
            await client.close()

    start = time.monotonic()
    with pytest.raises(LLMUnavailable, match=f"model server at {url} unreachable"):
        asyncio.run(go())
    assert time.monotonic() - start < 30
