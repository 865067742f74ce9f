"""The real server with models whose chat templates refuse (Gemma 2) or move (Mistral Nemo)
the system prompt: refine, a follow-up turn on the same session and the fix loop all work,
and the follow-up reuses the cache. Templates are read from the shared reference data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chat_templates import save_template_model
from lsp_fixtures import rng, server_command, start_editor

DOC = "import os\n\n\ndef add(a, b):\n    total = a + b\n    return total\n"


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", ["gemma2", "mistral-nemo"])
async def test_every_request_works_with_the_template(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = save_template_model(name, tmp_path_factory.getbasetemp() / f"tiny-{name}")
    root: Path = tmp_path_factory.mktemp("workspace")
    editor = await start_editor(server_command(model), options={"maxNewTokens": 24}, root=root)
    try:
        await editor.wait_ready()
        uri = f"file:///{name}.py"
        editor.open(uri, DOC)
        refine: dict[str, Any] = {"textDocument": {"uri": uri}, "range": rng((4, 0), (4, 0)),
                                  "instruction": "rename total"}
        first = await editor.request("copyspec/refine", refine)
        assert first["stats"]["new_tokens"] > 0
        follow = await editor.request("copyspec/refine", {
            **refine, "range": first["range"], "session": first["session"],
            "instruction": "now add a docstring",
        })
        assert follow["session"] == first["session"]
        assert follow["stats"]["cache_reused"], "the follow-up is the next turn of the session"
        fix = await editor.request("copyspec/fix", {
            "textDocument": {"uri": uri}, "range": rng((0, 0), (0, 9)), "maxTurns": 2,
            "diagnostics": [{"range": rng((0, 0), (0, 9)), "message": "unused import os"}],
        })
        assert len(fix["turns"]) >= 1 and all(t["stats"]["new_tokens"] > 0 for t in fix["turns"])
    finally:
        await editor.close()
