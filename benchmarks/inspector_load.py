"""How fast the inspector page shows a session of 10,000 events (target: under 1 s).

A session of 10,000 events is built the way the proxy builds one: most of it stored through the
library (user and assistant messages, with code blocks that become artifacts) under the storage id
the proxy gives a keyless caller's session (`local/<id>`), the last turns as real chat calls
through the running proxy against the caching fake upstream, so the page has a cost history and a
last prompt to lay out. The page reads it as that keyless caller, from the proxy's own origin. Then headless Chromium opens the page for that session
again and again; each load is timed from navigation start to the frame drawn after every section
has its data (`window.inspectorReadyMs`, set by the page). The JSON routes the page reads are also
timed on their own. Writes `benchmarks/inspector_load.json` and a screenshot of the loaded page.

    .venv/bin/python -m benchmarks.inspector_load [--events 10000] [--turns 100] [--loads 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from memory import create_runtime
from proxy.access.identity import LOCAL
from testkit import browser
from testkit.harness import config_for, serve_upstream, start_proxy

from .corpus import REPO_ROOT
from .machine import describe_machine

SESSION = "inspector-10k"
OUT = REPO_ROOT / "benchmarks" / "inspector_load.json"
SCREENSHOT = REPO_ROOT / "benchmarks" / "inspector_10k.png"
ROUTES = ("", "/prompt", "/turns", "/artifacts?limit=200", "/events?limit=50")


def _message(i: int) -> dict[str, str]:
    role = "user" if i % 2 == 0 else "assistant"
    text = f"Turn {i}: notes on ledger batch {i % 97} and the importer's handling of row {i}. " + "More detail here. " * (3 + i % 7)
    if i % 50 == 1:
        text += f"\n```python\n# importer/step_{i % 13}.py\ndef step_{i}(rows):\n    total = 0\n    for r in rows:\n        total += r\n    return total\n```"
    if i % 400 == 0:
        text += f"\nDecision (batch {i // 400}): batches of {i} rows are imported together"
    return {"role": role, "content": text}


async def _prefill(storage: Path, events: int) -> None:
    async with create_runtime(storage_path=storage, embedding_model="none") as runtime:
        session = runtime.session(f"{LOCAL}/{SESSION}")
        history: list[dict[str, str]] = []
        for start in range(0, events, 1000):
            history += [_message(i) for i in range(start, min(events, start + 1000))]
            await session.sync_messages(history)


def _time_routes(base: str, runs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with httpx.Client(base_url=base, timeout=30) as http:
        for route in ROUTES:
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                response = http.get(f"/memory/sessions/{SESSION}{route}")
                samples.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            out[route or "/"] = round(statistics.median(samples), 1)
    return out


def run(events: int, turns: int, loads: int) -> dict[str, Any]:
    reason = browser.missing()
    if reason is not None:
        raise SystemExit(f"no headless browser: {reason}")
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp:
        folder = Path(tmp)
        upstream = serve_upstream()
        config = config_for(upstream, folder, fallback_keys=True)  # keyless turns: the environment key pays
        prefill = events - 2 * turns
        started = time.perf_counter()
        asyncio.run(_prefill(Path(config.storage_path), prefill))
        prefill_s = time.perf_counter() - started
        proxy = start_proxy(config)
        chrome = None
        try:
            system = {"role": "system", "content": "You keep the ledger importer's notes. " * 150}
            with httpx.Client(base_url=proxy.url, timeout=60, headers={"X-Memory-Session": SESSION, "X-Memory-Budget": "4000"}) as http:
                for i in range(turns):
                    http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [system, _message(prefill + 2 * i)]}).raise_for_status()
            stored = httpx.get(f"{proxy.url}/memory/sessions/{SESSION}", timeout=30).json()["counts"]["events"]
            routes_ms = _time_routes(proxy.url, 5)
            chrome = browser.start_browser(1280, 1000)
            url = f"{proxy.url}/memory/ui#/s/{SESSION}"
            samples: list[float] = []
            for _ in range(loads):
                chrome.get("about:blank")
                chrome.get(url)
                deadline = time.monotonic() + 30
                ready = None
                while ready is None and time.monotonic() < deadline:
                    ready = chrome.execute_script("return document.body && document.body.dataset.loaded === 'session' ? window.inspectorReadyMs : null")
                    if ready is None:
                        time.sleep(0.01)  # poll interval, bounded by the deadline
                if ready is None:
                    raise RuntimeError("the inspector page did not load within 30 s")
                samples.append(float(ready))
            chrome.set_window_size(1280, 1800)
            chrome.save_screenshot(str(SCREENSHOT))
        finally:
            if chrome is not None:
                chrome.quit()
            proxy.served.stop()
            upstream.served.stop()
    warm = samples[1:] or samples
    return {
        "events": stored, "turns_through_proxy": turns, "prefill_seconds": round(prefill_s, 1),
        "page_load_ms": {"first": round(samples[0], 1), "median": round(statistics.median(warm), 1), "max": round(max(warm), 1),
                         "loads": len(samples)},
        "route_median_ms": routes_ms, "target_ms": 1000, "met": max(samples) < 1000,
        "machine": describe_machine().__dict__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()
    result = run(args.events, args.turns, args.loads)
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
