"""A small headless-chromium driver for the book's browser tests, over the DevTools protocol (aiohttp websockets).

`Browser().open(url)` loads a page and waits for its load event; `.evaluate(js)` returns the value of a JavaScript
expression (promises awaited); `.screenshot(path, width, height)` writes a PNG of the whole page's first screen.
Nothing here reaches the network: pages are file:// URLs of the built book."""
from __future__ import annotations

import asyncio, base64, json, shutil, subprocess, tempfile, time
from pathlib import Path

import aiohttp

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--hide-scrollbars"]


class Browser:
    def __init__(self, binary: str = "chromium", width: int = 1280, height: int = 1000):
        self.profile = Path(tempfile.mkdtemp(prefix="r1lit-chromium-"))
        self.proc = subprocess.Popen([binary, *FLAGS, f"--window-size={width},{height}", "--remote-debugging-port=0",
                                      f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, t0 = self.profile / "DevToolsActivePort", time.time()
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None: raise RuntimeError("chromium exited before it opened its debugging port")
            if time.time() - t0 > 30: raise RuntimeError("chromium did not open its debugging port in 30 s")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._connect())

    async def _connect(self):
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as r:
            pages = [t for t in await r.json(content_type=None) if t["type"] == "page"]
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self._id = 0
        await self._call("Page.enable")
        await self._call("Runtime.enable")

    async def _call(self, method: str, wait_event: str | None = None, **params):
        self._id += 1
        mid = self._id
        await self.ws.send_str(json.dumps({"id": mid, "method": method, "params": params}))
        result, seen = None, wait_event is None
        while result is None or not seen:
            msg = json.loads((await self.ws.receive(timeout=60)).data)
            if msg.get("id") == mid:
                if "error" in msg: raise RuntimeError(f"{method}: {msg['error']}")
                result = msg.get("result", {})
            elif wait_event and msg.get("method") == wait_event: seen = True
        return result

    def open(self, url: str):
        "Load `url` and wait for its load event (images included)."
        self.loop.run_until_complete(self._call("Page.navigate", wait_event="Page.loadEventFired", url=url))

    def evaluate(self, js: str):
        "The value of JavaScript expression `js` in the open page."
        r = self.loop.run_until_complete(self._call("Runtime.evaluate", expression=js, returnByValue=True, awaitPromise=True))
        if "exceptionDetails" in r: raise RuntimeError(f"javascript failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path):
        "A PNG of the visible part of the page."
        r = self.loop.run_until_complete(self._call("Page.captureScreenshot", format="png"))
        Path(path).write_bytes(base64.b64decode(r["data"]))
        return path

    def close(self):
        try: self.loop.run_until_complete(self.ws.close()); self.loop.run_until_complete(self.session.close())
        finally:
            self.proc.terminate()
            try: self.proc.wait(10)
            except subprocess.TimeoutExpired: self.proc.kill()
            self.loop.close()
            shutil.rmtree(self.profile, ignore_errors=True)


# What a page must satisfy, measured in the page: images loaded, no prose with None / nan / absolute paths, nothing
# wider than the article column unless a scrolling box holds it.
PAGE_CHECK = r"""
(() => {
  const art = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const col = art.getBoundingClientRect();
  const imgs = [...art.querySelectorAll('img')];
  const prose = [...art.querySelectorAll('p, li, td, th, h1, h2, h3, figcaption, .admonition')]
      .filter(e => !e.closest('.cell_input, pre, code, .highlight')).map(e => e.innerText).join('\n');
  const bad = [];
  for (const m of prose.matchAll(/(\bNone\b|\bnan\b|\bNaN\b|(?:^|[\s(`'"])\/(?:work|home|root|tmp|Users)\/[^\s]*)/g)) bad.push(m[0].trim());
  const wide = [];
  for (const e of art.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right <= col.right + 2) continue;
    let p = e.parentElement, held = false;
    while (p && p !== art) {
      const ox = getComputedStyle(p).overflowX;
      if (ox === 'auto' || ox === 'scroll' || ox === 'hidden') { held = true; break; }
      p = p.parentElement;
    }
    if (!held) wide.push(e.tagName + '.' + (e.className || '') + ' ' + Math.round(r.right - col.right) + 'px');
  }
  return {images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          bad: bad.slice(0, 10), wide: wide.slice(0, 10), page_wider: document.documentElement.scrollWidth > window.innerWidth + 2,
          title: document.title};
})()
"""
