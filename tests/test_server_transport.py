"""The server over TCP with UTF-8 positions, a model that fails to load, the load timeout,
and a clean exit on shutdown/exit."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_fixtures import Editor, free_port, rng, server_command, spawn_tcp, start_editor, tiny_model

# slow lane: each test starts the real server in a subprocess (seconds of torch import)
pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def connect(port: int, **options) -> Editor:
    """Connect once the TCP server listens (it imports torch first)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return await start_editor([], tcp_port=port, **options)
        except OSError:
            assert time.monotonic() < deadline, "the TCP server never listened"
            await asyncio.sleep(0.2)


async def test_tcp_utf8_positions_and_load_timeout(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    model = tiny_model(tmp_path_factory.getbasetemp())
    process = spawn_tcp(server_command(model), port)
    try:
        editor = await connect(port, encodings=["utf-8", "utf-16"], options={"loadTimeout": 0.01})
        assert editor.encoding == "utf-8"
        uri = "file:///utf8.txt"
        line = "名前 = '😀'; t = 1"
        editor.open(uri, f"# ü\n{line}\n", language_id="plaintext")
        start = len(line[: line.index("t = 1")].encode("utf-8"))
        params = {"textDocument": {"uri": uri}, "range": rng((1, start), (1, start + 5)),
                  "instruction": "rename t", "maxNewTokens": 24}
        with pytest.raises(JsonRpcException, match=r"still loading after 0\.01 s"):
            await editor.request("copyspec/refine", params)
        editor.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"copyspec": {"loadTimeout": 120}})
        )
        result = await editor.request("copyspec/refine", params)  # waits for the model
        assert editor.docs[uri] == f"# ü\n名前 = '😀'; {result['text']}\n"
        assert result["range"]["start"] == {"line": 1, "character": start}
        await editor.close()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


async def test_load_failure_names_the_path_and_exit_is_clean(tmp_path) -> None:
    """The model setting comes from the client here: `--model` itself refuses a missing path
    before the server starts (tests/test_cli_errors.py)."""
    missing = tmp_path / "no-such-model"
    model = tiny_model(tmp_path)
    editor = await start_editor(server_command(model), options={"model": str(missing)})
    status = await editor.wait_ready()
    assert status["state"] == "error" and str(missing) in status["error"]
    for _ in range(50):
        if editor.messages:
            break
        await asyncio.sleep(0.02)
    assert any(str(missing) in m.message for m in editor.messages)
    editor.open("file:///a.py", "x = 1\n")
    params = {"textDocument": {"uri": "file:///a.py"}, "range": rng((0, 0), (0, 5)),
              "instruction": "rename x"}
    with pytest.raises(JsonRpcException, match=f"failed to load.*{missing}"):
        await editor.request("copyspec/refine", params)
    server = editor._server  # the server's asyncio subprocess (pygls keeps no public handle)
    await editor.close()
    assert await asyncio.wait_for(server.wait(), 30) == 0
