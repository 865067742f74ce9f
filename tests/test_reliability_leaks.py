"""A bounded leak check on the real server: after a warm-up, many didChange notifications and
sequential refines must not grow its memory (RSS), threads or open files."""

from __future__ import annotations

import json

import psutil
import pytest

from raw_rpc import frame, rng, start

URI = "file:///leak.py"
DOC = "def add(a, b):\n    total = a + b\n    return total\n"
CHANGES = 20_000
REFINES = 1_000
RSS_LIMIT = 5 * 2**20


def keystrokes(count: int, first_version: int) -> bytes:
    """`count` didChange frames that type and delete one character in turn."""
    frames = []
    for i in range(count):
        where, text = ((0, 0), (0, 0)), "x"
        if i % 2:
            where, text = ((0, 0), (0, 1)), ""
        frames.append(frame(json.dumps({"jsonrpc": "2.0", "method": "textDocument/didChange",
                                        "params": {"textDocument": {"uri": URI,
                                                                    "version": first_version + i},
                                                   "contentChanges": [{"range": rng(*where),
                                                                       "text": text}]}})))
    return b"".join(frames)


def figures(process: psutil.Process) -> tuple[int, int, int]:
    return process.memory_info().rss, process.num_threads(), process.num_fds()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_no_growth_from_keystrokes_and_refines(tmp_path_factory) -> None:
    server = start(tmp_path_factory.getbasetemp())
    try:
        server.initialize({"maxNewTokens": 8, "gamma": 0})
        server.wait_ready()
        server.open(URI, DOC)
        process = psutil.Process(server.proc.pid)
        version = 2
        params = {"textDocument": {"uri": URI}, "range": rng((1, 0), (1, 17)),
                  "instruction": "rename total", "apply": "none"}

        def work(changes: int, refines: int) -> None:
            nonlocal version
            for _ in range(10):
                server.send_bytes(keystrokes(changes // 10, version))
                version += changes // 10
                server.call("copyspec/status")
            for _ in range(refines):
                assert "result" in server.call("copyspec/refine", params, timeout=60)

        work(4000, 40)  # warm-up: caches, allocator pools, lazily started threads
        before = figures(process)
        work(CHANGES, REFINES)
        after = figures(process)
        grown = after[0] - before[0]
        print(f"leaks: RSS {before[0] / 2**20:.1f} -> {after[0] / 2**20:.1f} MiB "
              f"({grown / 2**20:+.2f}) after {CHANGES} didChange + {REFINES} refines; "
              f"threads {before[1]} -> {after[1]}, fds {before[2]} -> {after[2]}")
        assert grown < RSS_LIMIT
        assert after[1:] == before[1:]
    finally:
        server.close()
