"""The in-process engine takes the region being rewritten as its prediction (the copy pointer's
first source), under the `prediction` setting: the answer never changes, the passes do not
rise.

The built-in model answers these edits like a (weak) editing model; the tests' random tiny
models answer gibberish that never resembles the region, so they could not show a gain."""

from __future__ import annotations

import pytest
import torch
from lsprotocol import types

from engine.config import SpecConfig
from engine.loading import LoadedModel, load_model
from engine.paths import demo_model_path
from engine.prompt_format import SYSTEM_PROMPT, edit_request
from engine.session import Session

from lsp_fixtures import rng, server_command, start_editor

RENAME = "Rename `append` to `add_item`."
MAX_NEW = 96


@pytest.fixture(scope="module")
def builtin() -> LoadedModel:
    return load_model(demo_model_path(), device="cpu", dtype="float32")


def generated(lm: LoadedModel, ids: list[int], max_new_tokens: int) -> list[int]:
    """Plain greedy decoding by transformers: what every path must reproduce."""
    output = lm.model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens,
                               do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    return output[0, len(ids):].tolist()


def test_the_region_as_prediction_keeps_the_answer_and_saves_passes(
    builtin: LoadedModel, held_out_function: str
) -> None:
    """What the LSP's engine thread does with the setting on (`Session.expected` then `send`),
    against the same turn without it. The chooser's draft lengths follow timed passes, so it is
    off here: with every candidate verified, the pass counts are exact."""
    spec = SpecConfig("copy", cost_aware=False)
    message = edit_request(held_out_function, RENAME)
    plain = Session(builtin, spec, system=SYSTEM_PROMPT).send(message, MAX_NEW)
    session = Session(builtin, spec, system=SYSTEM_PROMPT)
    prediction = session.expected(message)
    renamed = held_out_function.replace("append", "add_item").replace("y.add_item", "y.append")
    assert builtin.tokenizer.decode(prediction) == f"```python\n{renamed}\n```"
    predicted = session.send(message, MAX_NEW, prediction=prediction)
    assert predicted.token_ids == plain.token_ids
    assert predicted.token_ids == generated(builtin, predicted.prompt_ids, MAX_NEW)[
        : len(predicted.token_ids)]
    assert predicted.stats.accepted_prediction_tokens > 0
    # Without a prediction the copy proposer finds the code after the user's header itself
    # (a match across the substituted role name), so here the prediction saves no passes.
    assert predicted.stats.forward_passes <= plain.stats.forward_passes


def test_a_follow_up_predicts_the_last_answer(builtin: LoadedModel, held_out_function: str) -> None:
    """A follow-up shows no code: the turn before's answer is what the next one rewrites."""
    session = Session(builtin, SpecConfig("copy"), system=SYSTEM_PROMPT)
    first = session.send(edit_request(held_out_function, RENAME), MAX_NEW)
    assert session.expected("Now add a docstring.") == builtin.tokenizer(
        first.text, add_special_tokens=False)["input_ids"]


@pytest.mark.asyncio
async def test_the_setting_governs_the_in_process_prediction(
    tmp_path, held_out_function: str
) -> None:
    """The real server with the built-in model: `auto` (the default) and `on` hand the region to
    the engine, `off` does not; the answer is the same either way. Passes are not compared here:
    the server's chooser times its passes, so its counts vary from run to run."""
    command = server_command(demo_model_path(), "--log-file", str(tmp_path / "server.log"))
    editor = await start_editor(command, options={"maxNewTokens": MAX_NEW})
    try:
        await editor.wait_ready()
        uri = "file:///inprocess.py"
        editor.open(uri, held_out_function + "\n")
        results = {}
        for mode in ("off", "auto", "on"):
            editor.workspace_did_change_configuration(types.DidChangeConfigurationParams(
                settings={"copyspec": {"prediction": mode}}))
            await editor.status()  # a round trip: the notification has been handled
            results[mode] = await editor.request("copyspec/refine", {
                "textDocument": {"uri": uri}, "range": rng((0, 0), (7, 0)),
                "instruction": RENAME, "apply": "none"})
    finally:
        await editor.close()
    off = results["off"]["stats"]
    assert (off["accepted_prediction_tokens"], off["rejected_prediction_tokens"]) == (0, 0)
    for mode in ("auto", "on"):
        assert results[mode]["text"] == results["off"]["text"], mode
        assert results[mode]["stats"]["accepted_prediction_tokens"] > 0, mode
