"""The one prompt format: training, the CLI and the server all speak it, byte for byte."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from engine import prompt_format
from engine.training.data import EDIT_KINDS, SnippetSource, extract_code

SOURCE = '''\
import os


def scale(values, factor=10):
    total = 0
    result = []
    for value in values:
        result.append(value * factor)
        total += value
    print('done')
    return result, total


class Counter:
    """Counts things by name."""

    def __init__(self, start=0):
        self.count = start
        self.names = []

    def add(self, name, weight=1):
        if name in self.names:
            return False
        self.names.append(name)
        self.count += weight
        return True

    def reset(self):
        self.count = 0
        self.names = []


def read_lines(path, limit=100):
    with open(path) as handle:
        lines = handle.readlines()
    kept = [line.strip() for line in lines if line.strip()]
    if len(kept) > limit:
        kept = kept[:limit]
    return kept


def merge(left, right):
    merged = dict(left)
    for key, value in right.items():
        if key in merged:
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged
'''

GOLDEN_SHA256 = "a86739c61781dc9c4fdcc5694fd27428c5f5848677394ceee84cb05c6ea27222"
"""sha256 of the conversations below as generated before the prompt format moved into
engine/prompt_format.py: the built-in model was trained on exactly these bytes."""


@pytest.mark.timeout(60)
def test_training_conversations_are_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "source.py"
    path.write_text(SOURCE)
    source = SnippetSource([path])
    rng = random.Random(1234)
    conversations = [
        source.conversation(rng, kind).messages
        for _ in range(25)
        for kind in (*EDIT_KINDS, "multi")
    ]
    blob = json.dumps(conversations, sort_keys=True)
    assert hashlib.sha256(blob.encode()).hexdigest() == GOLDEN_SHA256


@pytest.mark.timeout(10)
def test_requests_and_answers_share_the_fence() -> None:
    request = prompt_format.edit_request("x = 1", "  rename x ", "python")
    assert request == "```python\nx = 1\n```\nrename x"
    assert prompt_format.edit_request("x", "do", "python", instruction_first=True) == (
        "do\n```python\nx\n```"
    )
    assert prompt_format.fence("x", "typescriptreact") == "```tsx\nx\n```"
    assert extract_code(prompt_format.fence("x = 1")) == "x = 1"


@pytest.mark.timeout(10)
def test_fix_and_failure_messages() -> None:
    assert prompt_format.fix_request(["a (line 2)", "b"]) == "Fix this error: a (line 2)\nb"
    assert prompt_format.fix_request([]) == ""
    assert prompt_format.failure_message(["a", "b"]) == "That fails with: a\nb\nPlease fix it."


@pytest.mark.timeout(10)
def test_dedent_keeps_the_indent_to_restore() -> None:
    assert prompt_format.dedent("    if x:\r\n        y()\r\n") == ("if x:\n    y()\n", "    ")
    assert prompt_format.dedent("\tx\n\n\ty") == ("x\n\ny", "\t")


@pytest.mark.timeout(30)
def test_the_format_module_needs_no_torch() -> None:
    """Tokenizer-free tools (the editors' tests, the training data) import it cheaply."""
    code = "import sys, engine.prompt_format; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.timeout(10)
def test_a_fence_inside_the_code_gets_a_longer_fence() -> None:
    code = 'def f():\n    """Run:\n\n    ```bash\n    f\n    ```\n    """'
    assert prompt_format.fence(code) == f"````python\n{code}\n````"
    assert prompt_format.fence("x = `y`") == "```python\nx = `y`\n```"
