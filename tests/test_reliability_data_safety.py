"""No keystroke is lost, whatever the client: the user types above and below the region while
the answer streams, into a naive client (applies every edit as given, no versions) and a
checking one (refuses a stale versioned edit). Seeded; each run checks the whole buffer."""

from __future__ import annotations

import random
from typing import Any

import pytest
from lsprotocol import types

from copyspec_lsp.adapters.line_index import LineIndex
from copyspec_lsp.flow.params import CONVERTER

from raw_rpc import RawServer, rng, start

# slow lane: each test starts the real server in a subprocess (seconds of torch import)
pytestmark = pytest.mark.slow

DOC = "import os\n\n\ndef add(a, b):\n    total = a + b\n    return total\n\n\nx = 1\n"
REGION = rng((3, 0), (5, 16))
RUNS = 4
SEED = 5


def typing_user(rand: random.Random, typed: list[str]) -> Any:
    """A user who, now and then, adds a line above the region or at the end of the file."""

    def type_something(server: RawServer, uri: str) -> None:
        if rand.random() < 0.5:
            return
        marker = f"# typed {len(typed)}\n"
        typed.append(marker)
        if rand.random() < 0.5:
            server.change(uri, rng((0, 0), (0, 0)), marker)
        else:
            lines = server.docs[uri].count("\n")
            server.change(uri, rng((lines, 0), (lines, 0)), marker)

    return type_something


def run_once(server: RawServer, uri: str, rand: random.Random, race: bool) -> tuple[bool, str]:
    """One streamed refine while the user types; (nothing lost, what went wrong)."""
    typed: list[str] = []
    user = typing_user(rand, typed)
    server.on_edit = None if race else user
    server.before_edit = (lambda s, params: user(s, uri)) if race else None
    server.open(uri, DOC)
    answer = server.call("copyspec/refine", {"textDocument": {"uri": uri}, "range": REGION,
                                             "instruction": "rename total"}, timeout=180)
    server.on_edit = server.before_edit = None
    missing = [marker for marker in typed if marker not in server.docs[uri]]
    if missing:
        return False, f"lost the user's {missing}"
    if "error" in answer:
        return False, f"aborted: {answer['error']['message']}"
    result = answer["result"]
    buffer = server.docs[uri]
    start, end = LineIndex(buffer).offsets(CONVERTER.structure(result["range"], types.Range))
    if buffer[start:end] != result["text"]:
        return False, "the region does not hold the answer"
    outside = buffer[:start] + "\x00" + buffer[end:]
    for marker in typed:
        if marker not in outside:
            return False, f"lost the user's {marker!r}"
        outside = outside.replace(marker, "", 1)
    expected = DOC[: DOC.index("def add")] + "\x00" + DOC[DOC.index("return total") + 12 :]
    if outside != expected:
        return False, "the text around the region changed"
    return True, ""


@pytest.fixture(scope="module", params=["naive", "checking"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    raw = start(base, log_file=base / f"data-{request.param}.log")
    raw.check_versions = request.param == "checking"
    options = {"maxNewTokens": 48, "gamma": 0}
    raw.initialize(options, versioned=raw.check_versions)
    raw.wait_ready()
    yield raw
    raw.close()


@pytest.mark.timeout(600)
def test_typing_outside_the_region_loses_nothing(server: RawServer) -> None:
    """Typing between edits (the edits echo in order): no client may lose anything."""
    rand = random.Random(SEED)
    outcomes = [run_once(server, f"file:///safe{i}.py", rand, race=False) for i in range(RUNS)]
    print(f"between edits, {'checking' if server.check_versions else 'naive'} client: "
          f"{sum(not ok for ok, _ in outcomes)} of {RUNS} runs not clean {outcomes}")
    assert all(ok for ok, _ in outcomes), outcomes


@pytest.mark.timeout(600)
def test_typing_while_an_edit_is_in_flight(server: RawServer) -> None:
    """The user types just before the client applies an edit computed against older text.
    A checking client refuses it and the server computes it again; a naive client applies
    it where it no longer fits, and the server puts back what it overwrote. A run of five
    beaten put-backs stops the request, so a naive client is held only to never losing the
    user's text."""
    rand = random.Random(SEED + 1)
    outcomes = [run_once(server, f"file:///race{i}.py", rand, race=True) for i in range(RUNS)]
    lost = sum(not ok for ok, _ in outcomes)
    kind = "checking" if server.check_versions else "naive"
    print(f"edit in flight, {kind} client: {lost} of {RUNS} runs not clean {outcomes}")
    if server.check_versions:
        assert lost == 0, outcomes
    else:
        deleted = [why for ok, why in outcomes if "lost the user's" in why]
        assert not deleted, "a naive client must at least never delete what the user typed"
