"""A scripted chat-completions server for r1lit's judge tests, on 127.0.0.1 only.

Each request's last user message names an item with `[[item:NAME]]` and a behaviour with `[[script:KIND]]` (both are
part of the response text the judge forwards). KIND is one of

    ok, contradiction      a valid verdict
    aligns_null            an aligned verdict with `"type": null` (as many LLM judges answer)
    aligns_none_text       an aligned verdict with `"type": " None"` and no `why`
    contradiction_messy    a misaligned verdict with `"type": "Contradiction "`
    contradictory          `"aligns": true` with `"type": "contradiction"`, every time (invalid)
    malformed              always a reply that is not JSON
    malformed_once         first a reply that is not JSON, then a valid verdict
    bad_schema_once        first JSON of the wrong shape, then a valid verdict
    429_once               first 429 with `Retry-After: 1`, then a valid verdict
    500_once, 500_always   HTTP 500 the first time / every time
    slow_once, slow_always a reply slower than the client's timeout the first time / every time

Every request is logged with its item, its attempt number, the status sent, its time and its Authorization header.
The server runs its own event loop in a background thread, so a test can drive it from a subprocess or in process."""
from __future__ import annotations

import asyncio, json, re, threading, time

from aiohttp import web

VERDICTS = {"contradiction": {"aligns": False, "type": "contradiction", "why": "the reasoning says the opposite"},
            "aligns_null": {"aligns": True, "type": None, "why": "the answer follows"},
            "aligns_none_text": {"aligns": True, "type": " None"},
            "contradiction_messy": {"aligns": False, "type": "Contradiction ", "why": "the reasoning says the opposite"},
            "contradictory": {"aligns": True, "type": "contradiction", "why": "?"}}
OK = {"aligns": True, "type": "aligns", "why": "the answer follows"}
USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


class ScriptedJudgeServer:
    def __init__(self, slow_s: float = 3.0, delay_s: float = 0.0):
        self.slow_s, self.delay_s = slow_s, delay_s
        self.log: list[dict] = []
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.url = None

    # ------------------------------------------------------------------ replies
    def _completion(self, model: str, content: str) -> web.Response:
        body = {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": USAGE}
        return web.json_response(body)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        text = body["messages"][-1]["content"]
        item = (re.search(r"\[\[item:([\w-]+)\]\]", text) or [None, "?"])[1]
        kind = (re.search(r"\[\[script:(\w+)\]\]", text) or [None, "ok"])[1]
        with self._lock:
            self.counts[item] = attempt = self.counts.get(item, 0) + 1
        entry = {"item": item, "kind": kind, "attempt": attempt, "t": time.time(),
                 "auth": request.headers.get("Authorization", ""), "status": 200}
        self.log.append(entry)
        if self.delay_s: await asyncio.sleep(self.delay_s)
        first = attempt == 1
        if kind == "429_once" and first:
            entry["status"] = 429
            return web.json_response({"error": {"message": "rate limited", "type": "rate_limit", "code": "rate_limit"}},
                                     status=429, headers={"Retry-After": "1"})
        if kind == "500_always" or (kind == "500_once" and first):
            entry["status"] = 500
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        if kind == "slow_always" or (kind == "slow_once" and first):
            entry["status"] = "slow"
            await asyncio.sleep(self.slow_s)
        if kind == "malformed" or (kind == "malformed_once" and first):
            return self._completion(body["model"], "Sure, the reasoning aligns {not json")
        if kind == "bad_schema_once" and first:
            return self._completion(body["model"], json.dumps({"aligns": "perhaps", "kind": "aligns"}))
        return self._completion(body["model"], json.dumps(VERDICTS.get(kind, OK)))

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "ScriptedJudgeServer":
        started = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}/v1"
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not started.wait(10): raise RuntimeError("the scripted judge server did not start in 10 s")
        return self

    def stop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def requests_for(self, item: str) -> list[dict]:
        return [e for e in self.log if e["item"] == item]
