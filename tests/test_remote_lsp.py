"""The real copyspec-lsp with `server` set, pointed at a real `copyspec serve` (one process, no
Ray: the Ray pool has its own tests): the same edits and text as in-process, session reuse on
the server, cancel closing the stream, and an unreachable server answered with the model's
error code."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcRequestCancelled

from copyspec_lsp.handlers.methods import MODEL_ERROR_CODE

from lsp_fixtures import (
    Editor,
    free_port,
    held_stream,
    rebuilt,
    rng,
    server_command,
    start_editor,
    tiny_model,
)
from pool_fixtures import serve_command, spawn, stop, wait_healthy

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow,
              pytest.mark.timeout(180)]

DOC = "def add(a, b):\n    total = a + b\n    return total\n"
LONG = 400


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    port = free_port()
    log = base / "serve.log"
    process = spawn(serve_command(port, "--replicas", "0", "--model", str(tiny_model(base))), log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log, 120)
        yield url
    finally:
        stop(process)


async def editor_for(base: Path, options: dict[str, Any]) -> Editor:
    client = await start_editor(server_command(tiny_model(base)), options=options)
    await client.wait_ready()
    return client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def editors(service: str, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    remote = await editor_for(base, {"server": service, "maxNewTokens": 48})
    local = await editor_for(base, {"maxNewTokens": 48})
    yield remote, local
    await remote.close()
    await local.close()


def params(uri: str, **extra: Any) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "range": rng((1, 0), (1, 0)),
            "instruction": "rename total", **extra}


async def test_remote_turns_match_local_and_reuse_the_servers_cache(editors) -> None:
    remote, local = editors
    uri = "file:///remote.py"
    for client in editors:
        client.open(uri, DOC)
    status = await remote.status()
    assert status["model"].startswith("http://127.0.0.1") and status["device"] == "remote"
    first = await remote.request("copyspec/refine", params(uri))
    expected = await local.request("copyspec/refine", params(uri))
    assert first["text"] == expected["text"], "greedy: remote and in-process give the same text"
    assert remote.docs[uri] == local.docs[uri]
    assert len([e for e in remote.edits if uri in (e.edit.changes or {})]) >= 2, "streamed"
    chunks = [c for c in remote.chunks if c["uri"] == uri]
    assert chunks[-1]["final"] and chunks[-1]["text"] == first["text"]
    assert rebuilt(chunks)[-1] == first["text"], "the changes rebuild the answer"
    assert first["stats"]["new_tokens"] > 0 and first["stats"]["forward_passes"] > 0
    follow = {**params(uri), "range": first["range"], "session": first["session"],
              "instruction": "now add type hints", "apply": "none"}
    second = await remote.request("copyspec/refine", follow)
    local_follow = {**follow, "range": expected["range"], "session": expected["session"]}
    assert second["text"] == (await local.request("copyspec/refine", local_follow))["text"]
    assert second["stats"]["reused_tokens"] > 0, "turn 2 reused the server's cache"


async def test_cancel_closes_the_stream_and_stops_the_server(editors, service: str) -> None:
    """The cancel comes from the first streamed edit while the test gate holds both sides:
    the LSP's request and `copyspec serve`'s turn (engine/gate.py), so neither can finish
    before the stream closes, however fast the model is."""
    remote, _ = editors
    uri = "file:///remote-cancel.py"
    remote.open(uri, DOC)
    fired: list[int] = []

    def on_edit(client: Editor, edited: str) -> None:
        if edited == uri and not fired:
            fired.append(1)
            client.cancel_request(types.CancelParams(id=uri))

    remote.on_edit = on_edit
    try:
        with held_stream(), pytest.raises(JsonRpcRequestCancelled):
            await remote.request("copyspec/refine", params(uri, maxNewTokens=LONG), msg_id=uri)
    finally:
        remote.on_edit = None
    assert fired
    edits = sum(1 for e in remote.edits if uri in (e.edit.changes or {}))
    session = next(s["session"] for s in (await remote.status())["sessions"] if s["uri"] == uri)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    async with httpx.AsyncClient() as http:
        while True:
            seen = (await http.get(f"{service}/v1/sessions/{session}")).json()
            if seen["passes_after_stop"] is not None:
                break
            assert loop.time() < deadline, f"the server never saw the stream close: {seen}"
            await asyncio.sleep(0.05)
    assert seen["last_stats"]["cancelled"]
    assert seen["last_stats"]["new_tokens"] < LONG
    assert seen["passes_after_stop"] <= 1, "the server stopped within one engine step"
    assert sum(1 for e in remote.edits if uri in (e.edit.changes or {})) == edits, (
        "nothing was applied after the cancel, though the server has finished since")


async def test_an_unreachable_server_is_the_models_error_code(tmp_path_factory) -> None:
    base = tmp_path_factory.getbasetemp()
    client = await editor_for(base, {"server": f"http://127.0.0.1:{free_port()}"})
    try:
        uri = "file:///nowhere.py"
        client.open(uri, DOC)
        with pytest.raises(JsonRpcException) as raised:
            await client.request("copyspec/refine", params(uri))
        assert raised.value.code == MODEL_ERROR_CODE
        assert "127.0.0.1" in str(raised.value)
    finally:
        await client.close()
