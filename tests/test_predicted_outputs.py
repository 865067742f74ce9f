"""OpenAI Predicted Outputs end to end, on the built-in model: the engine's side source (the
answer never changes; a perfect prediction is copied whole; counts stay exact at a stop), a
real `copyspec serve --replicas 0` driven by the official `openai` SDK and by raw HTTP (same
answers with and without a prediction, usage figures, OpenAI's error bodies), and the LSP's
remote client sending the region as `prediction` to our server when the setting says so."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from copyspec_lsp.adapters.remote import RemoteModel
from copyspec_lsp.adapters.settings import Settings
from engine.chat import render_ids
from engine.config import SamplingConfig, SpecConfig
from engine.decode import StopRules
from engine.detokenize import TextStream
from engine.expected import edited, expected_answer, renamed, renames
from engine.index import NgramIndex
from engine.loading import LoadedModel, load_model
from engine.paths import demo_model_path
from engine.prediction import SourcedIndex
from engine.prompt_format import SYSTEM_PROMPT, edit_request, fence
from engine.sequence import SequenceState
from engine.stats import TurnStats
from engine.turn import run_turn

from lsp_fixtures import free_port, rng, server_command, start_editor
from pool_fixtures import serve_command, spawn, stop, wait_healthy

pytestmark = pytest.mark.timeout(120)

CODE = ("def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
        "    return total / len(values)")
EDITS = [
    (CODE, "Rename `total` to `acc`."),
    ("def add(a, b):\n    total = a + b\n    return total", "Add type hints."),
    ("class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
     "        self.items.append(item)", "Add a pop method."),
]
UNRELATED = "class Foo:\n    pass\n" * 5


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return load_model(demo_model_path(), "cpu")


def prompt(lm: LoadedModel, code: str, instruction: str) -> list[int]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": edit_request(code, instruction)}]
    return render_ids(lm.tokenizer, messages)


def turn(
    lm: LoadedModel, ids: list[int], prediction: list[int] | tuple[()] = (),
    spec: SpecConfig | None = None, stops: tuple[str, ...] = (),
    sampling: SamplingConfig | None = None,
) -> tuple[list[int], TurnStats]:
    spec = spec or SpecConfig("copy")
    state = SequenceState(lm.model, spec.gamma, spec.policy)
    rules = StopRules(lm.eos_token_ids, 160, stop_strings=stops,
                      decode_text=TextStream(lm.tokenizer).decode)
    return run_turn(state, ids, lm, spec, rules, sampling, prediction=prediction)


def tokens(lm: LoadedModel, text: str) -> list[int]:
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


# the engine: a side source that never changes the answer


@pytest.mark.parametrize("policy", ["resync", "recent"])
def test_the_greedy_answer_is_the_same_with_any_prediction(lm: LoadedModel, policy: str) -> None:
    spec = SpecConfig("copy", policy=policy, cost_aware=False)  # every candidate is verified
    for code, instruction in EDITS:
        ids = prompt(lm, code, instruction)
        plain, _ = turn(lm, ids, spec=spec)
        for guess in (fence(code), UNRELATED):
            predicted, stats = turn(lm, ids, tokens(lm, guess), spec)
            assert predicted == plain, (policy, instruction, guess[:20])
            assert stats.accepted_prediction_tokens <= stats.new_tokens - 1
            assert stats.rejected_prediction_tokens >= 0
        # an unrelated prediction is tried first and thrown away
        assert stats.rejected_prediction_tokens > 0


@pytest.mark.parametrize("cost_aware", [False, True], ids=["every-candidate", "chooser"])
def test_each_prediction_token_counts_once(lm: LoadedModel, cost_aware: bool) -> None:
    """OpenAI's meanings: accepted, prediction tokens that appeared in the output; rejected,
    prediction tokens drafted and not used. A token the pointer drafts again on later passes
    (a prediction holding the code twice, an edit the model declines pass after pass) is
    still one token: together they never exceed the prediction."""
    spec = SpecConfig("copy", cost_aware=cost_aware)
    for code, instruction in EDITS:
        ids = prompt(lm, code, instruction)
        for guess in (fence(code), fence(code) * 2, UNRELATED):
            prediction = tokens(lm, guess)
            _, stats = turn(lm, ids, prediction, spec)
            counted = stats.accepted_prediction_tokens + stats.rejected_prediction_tokens
            assert counted <= len(prediction), (instruction, guess[:20], stats)
            assert stats.accepted_prediction_tokens <= stats.new_tokens - 1


def test_a_perfect_prediction_is_copied_whole(lm: LoadedModel) -> None:
    """The answer's own ids as the prediction: every pass copies from it and keeps it all,
    each pass's own token is the prediction's next one, and so every prediction token
    appeared in the output (the EOS is the model's alone)."""
    ids = prompt(lm, CODE, "Rename `total` to `acc`.")
    plain, plain_stats = turn(lm, ids)
    spoken = [t for t in plain if t not in lm.eos_token_ids]
    predicted, stats = turn(lm, ids, spoken)
    assert predicted == plain
    assert stats.rejected_prediction_tokens == 0
    assert stats.accepted_prediction_tokens == len(spoken) == stats.new_tokens - 1
    assert stats.forward_passes < plain_stats.forward_passes


def test_tokens_past_a_stop_count_as_rejected(lm: LoadedModel) -> None:
    """A stop string cuts the last pass's accepted copy: what the output lost of it was
    thrown away, and the output itself is still all prediction."""
    ids = prompt(lm, CODE, "Rename `total` to `acc`.")
    plain, _ = turn(lm, ids)
    spoken = [t for t in plain if t not in lm.eos_token_ids]
    stops = ("values)",)
    expected, _ = turn(lm, ids, stops=stops)
    spec = SpecConfig("copy", cost_aware=False)  # every candidate is verified
    predicted, stats = turn(lm, ids, spoken, spec, stops=stops)
    assert predicted == expected and len(expected) < len(spoken)
    verified = stats.accepted_prediction_tokens + stats.rejected_prediction_tokens
    assert stats.accepted_prediction_tokens == stats.new_tokens, "every output token was copied"
    assert verified > stats.new_tokens, "the pass went on past the stop"


def test_sampling_with_a_prediction_keeps_its_counts_within_the_output(lm: LoadedModel) -> None:
    ids = prompt(lm, CODE, "Rename `total` to `acc`.")
    sampling = SamplingConfig(temperature=0.7, seed=3)
    _, stats = turn(lm, ids, tokens(lm, fence(CODE)), sampling=sampling)
    assert 0 < stats.accepted_prediction_tokens <= stats.new_tokens - 1


# `copyspec serve`: the OpenAI SDK and raw HTTP


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.getbasetemp() / "serve-predicted.log"
    port = free_port()
    process = spawn(serve_command(port, "--replicas", "0"), log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log, 90)
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def sdk(service: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0)


def ask(code: str, instruction: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": edit_request(code, instruction)}]


def details(usage: Any) -> tuple[int, int]:
    found = usage.completion_tokens_details
    return found.accepted_prediction_tokens, found.rejected_prediction_tokens


@pytest.mark.slow
def test_the_sdk_gets_the_same_answer_and_the_prediction_figures(sdk: openai.OpenAI) -> None:
    messages = ask(CODE, "Rename `total` to `acc`.")
    plain = sdk.chat.completions.create(model="default", messages=messages, max_tokens=120)
    assert details(plain.usage) == (0, 0)
    answer = plain.choices[0].message.content
    # the answer as the prediction: nearly all of it is copied (tokenizing the text back may
    # split a token differently than the model wrote it, so not quite all)
    perfect = sdk.chat.completions.create(
        model="default", messages=messages, max_tokens=120,
        prediction={"type": "content", "content": answer})
    assert perfect.choices[0].message.content == answer
    assert perfect.usage.completion_tokens == plain.usage.completion_tokens
    accepted, rejected = details(perfect.usage)
    completion = perfect.usage.completion_tokens
    assert completion // 2 < accepted <= completion - 1 and rejected >= 0
    passes = perfect.model_extra["copyspec"]["stats"]["forward_passes"]
    assert passes < plain.model_extra["copyspec"]["stats"]["forward_passes"]
    # the code being rewritten, sent as text parts and streamed with usage
    stream = sdk.chat.completions.create(
        model="default", messages=messages, max_tokens=120, stream=True,
        stream_options={"include_usage": True},
        prediction={"type": "content", "content": [
            {"type": "text", "text": "```python\n"}, {"type": "text", "text": CODE + "\n```"}]})
    pieces, usage = [], None
    for chunk in stream:
        pieces.extend(choice.delta.content or "" for choice in chunk.choices)
        usage = chunk.usage or usage
    assert "".join(pieces) == answer
    assert usage is not None and usage.completion_tokens == completion
    streamed = details(usage)
    as_string = sdk.chat.completions.create(
        model="default", messages=messages, max_tokens=120,
        prediction={"type": "content", "content": fence(CODE)})
    assert details(as_string.usage) == streamed, "parts are joined; counts are deterministic"
    assert streamed[0] > 0


@pytest.mark.slow
def test_an_unrelated_prediction_is_rejected_and_changes_nothing(sdk: openai.OpenAI) -> None:
    messages = ask(*EDITS[1])
    plain = sdk.chat.completions.create(model="default", messages=messages, max_tokens=80)
    wrong = sdk.chat.completions.create(
        model="default", messages=messages, max_tokens=80,
        prediction={"type": "content", "content": UNRELATED})
    assert wrong.choices[0].message.content == plain.choices[0].message.content
    accepted, rejected = details(wrong.usage)
    assert rejected > 0 and accepted <= wrong.usage.completion_tokens - 1


OVER_THE_WINDOW = " ".join(f"w{i}" for i in range(3000))
"""Over 2,048 tokens: more than the built-in model's window."""
BAD = [
    ("not an object", "the code", "'prediction' must be an object"),
    ("wrong type", {"type": "text", "content": "x"}, "'prediction.type' must be 'content'"),
    ("no content", {"type": "content"}, "got null"),
    ("number content", {"type": "content", "content": 7}, "a string or a list of text parts"),
    ("bare string part", {"type": "content", "content": ["x"]}, "must be a text part"),
    ("image part", {"type": "content", "content": [{"type": "image_url", "image_url": {}}]},
     "a part of type 'image_url'"),
    ("text not a string", {"type": "content", "content": [{"type": "text", "text": 5}]},
     "'prediction.content[0].text' must be a string"),
    ("over the window", {"type": "content", "content": OVER_THE_WINDOW}, "at most 2048"),
]


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_bad_predictions_get_openais_error_body(service: str, stream: bool) -> None:
    for name, prediction, words in BAD:
        body = {"model": "default", "messages": ask(*EDITS[1]), "max_tokens": 8,
                "stream": stream, "prediction": prediction}
        response = httpx.post(f"{service}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 400, (name, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, name
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error", "prediction", None), name
        assert words in error["message"], (name, error["message"])
    # after all these the service still answers, and a null prediction is no prediction
    body = {"model": "default", "messages": ask(*EDITS[1]), "max_tokens": 8, "prediction": None}
    answer = httpx.post(f"{service}/v1/chat/completions", json=body, timeout=60).json()
    assert answer["usage"]["completion_tokens_details"] == {
        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}


@pytest.mark.slow
def test_the_sdk_raises_bad_request_naming_the_param(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(
            model="default", messages=ask(*EDITS[1]), max_tokens=8,
            prediction={"type": "content", "content": [{"type": "image_url"}]})
    assert raised.value.status_code == 400 and raised.value.param == "prediction"
    assert "text parts only" in raised.value.message


# the LSP's remote client


def test_the_client_finds_the_code_being_rewritten() -> None:
    first = [{"role": "system", "content": SYSTEM_PROMPT},
             {"role": "user", "content": edit_request(CODE, "Use ``` fences\nin docs")}]
    assert expected_answer(first) == fence(CODE)
    follow = [*first, {"role": "assistant", "content": "```python\nnew\n```"},
              {"role": "user", "content": "That fails with: E1\nPlease fix it."}]
    assert expected_answer(follow) == "```python\nnew\n```", "a follow-up rewrites the answer"
    assert expected_answer([{"role": "user", "content": "hello"}]) is None


def test_the_expected_answer_makes_the_renames_asked_for() -> None:
    """Each rename named in the request is made where the old name stands whole: not inside a
    longer name, not as another object's attribute, and `self.x` only when named so."""
    code = ("def f(count, items):\n    counter = count + items.count(0)\n"
            "    self.count = count\n    return count")
    assert renamed(code, "Rename `count` to `num`.") == (
        "def f(num, items):\n    counter = num + items.count(0)\n"
        "    self.count = num\n    return num")
    assert renamed(code, "rename self.count to self.total") == code.replace(
        "self.count", "self.total")
    both = "Now rename the parameter `count` to `n` and Rename `items` into `xs`."
    assert renamed(code, both) == code.replace("(count, items)", "(n, xs)").replace(
        "count + items", "n + xs").replace("= count", "= n").replace("return count", "return n")
    assert renamed(code, "Add a docstring mentioning the rename of count.") == code
    assert renamed(code, "Rename it to `n`.") == code, "no old name: the selection is meant"
    assert renames("Please rename the local variable total into acc. Then rename `x` to `y`") == {
        "total": "acc", "x": "y"}
    assert renames("Rename `a` to `b`, and `b` to `a`.") == {"a": "b", "b": "a"}
    assert renamed("a(b)", "Rename `a` to `b`, and `b` to `a`.") == "b(a)", "made at once"
    assert renames(edit_request("# rename x to y", "Add a docstring.")) == {}, "not in code"
    follow = [{"role": "user", "content": edit_request(code, "Rename `count` to `num`.")},
              {"role": "assistant", "content": fence(code)},
              {"role": "user", "content": "Now rename `items` to `values`."}]
    assert expected_answer(follow[:1]) == fence(renamed(code, "Rename `count` to `num`."))
    assert expected_answer(follow) == fence(code.replace("items", "values"))


def test_the_expected_answer_makes_the_line_and_literal_edits_spelled_out() -> None:
    """A line to delete or insert, found once exactly, and a literal changed where it stands
    whole; the attribute a rename names is `self`'s; an edit whose line is not found, or
    found twice, is left out; prose that names no single value changes nothing."""
    code = "def f(x):\n    y = 10\n    print(y)\n    self.z = 'a b'\n    return text.split()"
    lines = code.split("\n")
    without_print = "\n".join(lines[:2] + lines[3:])
    assert edited(code, "Delete the line `print(y)`.") == without_print
    assert edited(code, "delete this line: print(y)") == without_print
    assert edited(code, "Add `assert y` after the line `y = 10`.") == "\n".join(
        [*lines[:2], "    assert y", *lines[2:]])
    assert edited(code, "Insert `pass` before `return text.split()`.") == "\n".join(
        [*lines[:4], "    pass", lines[4]])
    assert edited(code, "Change `10` to `20`.") == code.replace("10", "20")
    assert edited(code, "Replace 10 with 0.25.") == code.replace("10", "0.25")
    assert edited(code, "Change the literal 'a b' to 'c'.") == code.replace("'a b'", "'c'")
    assert edited(code, "Now replace `text.split()` with `text.split(' ')`.") == code.replace(
        "split()", "split(' ')")
    assert edited(code, "Rename the attribute `z` to `w`.") == code.replace("self.z", "self.w")
    twice = code + "\n    print(y)"
    assert edited(twice, "Delete the line `print(y)`.") == twice, "which one is meant?"
    assert edited(code, "Delete the line `print(x)`.") == code
    assert edited(code, "Replace the loop with a comprehension.") == code
    assert edited(code, "Change `y` to `r'\\d'`.") == code.replace("y", "r'\\d'")


def test_a_prediction_starts_with_the_prompt_behind_it() -> None:
    """The prediction follows the prompt, so before the output's first token its start agrees
    with everything before the sequence's end (a copy the chooser can trust), and later the
    agreement runs back through the prediction into the prompt."""
    prompt, prediction = [5, 6, 7, 8], [1, 2, 3]
    index = NgramIndex(3, "resync")
    index.extend(prompt)
    view = SourcedIndex(prediction, index)
    assert view.agreement(0) == len(prompt) and view.agreement(0, cap=2) == 2
    assert view.agreement(1) == 0  # prediction[0] is not what the prompt ends with
    index.extend([1, 2])  # the output so far follows the prediction
    assert view.agreement(2) == 2 + len(prompt)
    assert view.agreement(3) == 0 and view.agreement(len(prediction) + 1) == 0


def test_the_prediction_setting_is_validated_and_reloads_only_a_remote_model() -> None:
    settings, problems = Settings().update({"prediction": "ON"})
    assert settings.prediction == "on" and not problems
    settings, problems = Settings(prediction="off").update({"prediction": "sometimes"})
    assert settings.prediction == Settings().prediction == "auto"
    assert len(problems) == 1 and "'sometimes' is not one of auto, on, off" in problems[0]
    assert not Settings().needs_reload(Settings(prediction="off"))
    remote = Settings(server="http://h:1")
    assert remote.needs_reload(Settings(server="http://h:1", prediction="off"))


@pytest.fixture
def other_server() -> Iterator[str]:
    """A server that is not ours (vLLM's model list, `owned_by: vllm`); it answers nothing
    else, so a client that posted a turn to it would fail."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [
                {"id": "Qwen/Qwen2.5-Coder-0.5B", "object": "model", "owned_by": "vllm"}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_auto_sends_the_prediction_to_servers_known_to_take_it(
    service: str, other_server: str
) -> None:
    assert RemoteModel(service).takes_prediction(), "ours: owned_by copyspec"
    assert not RemoteModel(other_server).takes_prediction()
    assert RemoteModel(other_server, prediction="on").takes_prediction()
    assert not RemoteModel(service, prediction="off").takes_prediction()
    # OpenAI's host is known without asking it anything (nothing listens there in the tests)
    assert RemoteModel("https://api.openai.com/v1").takes_prediction()


@pytest_asyncio.fixture(loop_scope="function")
async def editors(service: str) -> Any:
    model = demo_model_path()
    found = []
    for mode in ("auto", "off"):
        editor = await start_editor(server_command(model), options={
            "server": service, "maxNewTokens": 80, "prediction": mode})
        await editor.wait_ready()
        found.append(editor)
    yield found
    for editor in found:
        await editor.close()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_lsp_sends_the_region_to_our_server_unless_told_not_to(editors) -> None:
    uri = "file:///predicted.py"
    results = []
    for editor in editors:
        editor.open(uri, CODE + "\n")
        results.append(await editor.request("copyspec/refine", {
            "textDocument": {"uri": uri}, "range": rng((0, 0), (5, 0)),
            "instruction": "Rename `total` to `acc`.", "apply": "none"}))
    auto, off = results
    assert auto["text"] == off["text"], "the prediction never changes the answer"
    assert auto["stats"]["accepted_prediction_tokens"] > 0, "auto: our server took the region"
    assert (off["stats"]["accepted_prediction_tokens"],
            off["stats"]["rejected_prediction_tokens"]) == (0, 0)
    # Passes are not compared: the server's chooser times its passes, and the demo model does
    # not make the rename the prediction carries.
