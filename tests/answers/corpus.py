'''Realistic instruct-model answers and the exact buffer text each must produce.

Each case is written in the style its family answers in (prose, fences, diffs, thinking),
for a region of a real-looking file. `region` is the document's text for the region, with its
own indentation and line breaks; `expected` is what the region must hold afterwards.
'''

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    region: str
    answer: str
    expected: str


SCALE = """\
def scale(values, factor=10):
    total = 0
    result = []
    for value in values:
        result.append(value * factor)
        total += value
    return result, total"""

SCALE_ACC = SCALE.replace("total", "acc")

SCALE_LOGGED = """\
def scale(values, factor=10):
    total = 0
    result = []
    for value in values:
        result.append(value * factor)
        total += value
    logging.debug("scaled %d values", len(result))
    return result, total"""

ADD = """\
    def add(self, name, weight=1):
        if name in self.names:
            return False
        self.names.append(name)
        self.count += weight
        return True"""

ADD_TYPED = """\
def add(self, name: str, weight: int = 1) -> bool:
    if name in self.names:
        return False
    self.names.append(name)
    self.count += weight
    return True"""

ADD_TYPED_KEPT = "\n".join("    " + line if line else line for line in ADD_TYPED.split("\n"))

RETRY = """\
        if retries > 3:
            raise TimeoutError("gave up")"""

SUM_JS = """\
function sum(items) {
  let total = 0;
  for (const item of items) {
    total += item.price;
  }
  return total;
}"""

SUM_JS_REDUCE = """\
function sum(items) {
  return items.reduce((total, item) => total + item.price, 0);
}"""

AREA_RS = """\
fn area(w: u32, h: u32) -> u32 {
    w * h
}"""

AREA_RS_CHECKED = """\
fn area(w: u32, h: u32) -> Option<u32> {
    w.checked_mul(h)
}"""

PARSE_DOC = '''\
def parse(text):
    """Parse `key=value` pairs.

    ```python
    parse("a=1")
    ```
    """
    return dict(pair.split("=") for pair in text.split())'''

PARSE_DOC_NEW = '''\
def parse(text, sep="="):
    """Parse `key=value` pairs.

    ```python
    parse("a=1")
    parse("a:1", sep=":")
    ```
    """
    return dict(pair.split(sep) for pair in text.split())'''

README = '''\
def readme(name):
    return f"""# {name}

```bash
pip install {name}
```
"""'''

README_NEW = '''\
def readme(name, version):
    return f"""# {name} {version}

```bash
pip install {name}=={version}
```
"""'''

FIB = """\
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)"""

FIB_CACHED = """\
@lru_cache(maxsize=None)
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)"""

TABBED = "\tdef close(self):\n\t\tself.handle.close()"
TABBED_NEW = "\tdef close(self):\n\t\tif self.handle:\n\t\t\tself.handle.close()"


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def fenced(code: str, info: str = "python", fence: str = "```") -> str:
    return f"{fence}{info}\n{code}\n{fence}"


CASES = [
    Case("fence only", "built-in", SCALE, fenced(SCALE_ACC), SCALE_ACC),
    Case(
        "prose before and after", "Qwen2.5-Coder", SCALE,
        "Here's the updated code with `total` renamed to `acc`:\n\n" + fenced(SCALE_ACC)
        + "\n\nThis renames the variable `total` to `acc` throughout the function, including "
        "the return statement.",
        SCALE_ACC,
    ),
    Case(
        "prose before", "DeepSeek-Coder", SCALE,
        "Sure, here is the modified function:\n" + fenced(SCALE_ACC) + "\n", SCALE_ACC,
    ),
    Case(
        "prose after", "Llama 3", SCALE,
        fenced(SCALE_ACC) + "\n\nI renamed `total` to `acc`. Let me know if you need anything "
        "else!",
        SCALE_ACC,
    ),
    Case(
        "explanation with bullets", "Gemma 2", SCALE,
        fenced(SCALE_ACC) + "\n\n**Explanation:**\n\n* **`acc = 0`:** The accumulator now has "
        "a shorter name.\n* **`acc += value`:** Every use was updated.\n",
        SCALE_ACC,
    ),
    Case(
        "certainly below", "Phi-3.5", SCALE,
        "Certainly! Below is the revised version of the function, where the variable `total` "
        "has been renamed to `acc`:\n\n\n" + fenced(SCALE_ACC) + "\n\n\nIn this version, `acc` "
        "is used to accumulate the sum of the original values.",
        SCALE_ACC,
    ),
    Case("no fence", "Codestral", SCALE, SCALE_ACC + "\n", SCALE_ACC),
    Case(
        "no fence, stray closing fence", "StarCoder2", SCALE, SCALE_ACC + "\n```\n", SCALE_ACC,
    ),
    Case(
        "no fence, comment added on top", "DeepSeek-Coder", SCALE,
        "# total renamed to acc\n" + SCALE_ACC, "# total renamed to acc\n" + SCALE_ACC,
    ),
    Case(
        "usage example after", "StarCoder2-Instruct", SCALE,
        "Here is the updated function:\n\n" + fenced(SCALE_ACC) + "\n\nYou can test it as "
        "follows:\n\n" + fenced("assert scale([1, 2], 2) == ([2, 4], 3)"),
        SCALE_ACC,
    ),
    Case(
        "import block first", "Qwen2.5-Coder", SCALE,
        "First, add the import at the top of your file:\n\n" + fenced("import logging")
        + "\n\nThen update the function:\n\n" + fenced(SCALE_LOGGED)
        + "\n\nThe debug message reports how many values were scaled.",
        SCALE_LOGGED,
    ),
    Case(
        "test block first", "Llama 3.1", SCALE,
        "Let's start with a test that pins down the behaviour:\n\n"
        + fenced("def test_scale():\n    assert scale([1, 2], 2) == ([2, 4], 3)")
        + "\n\nAnd here is the implementation with the rename:\n\n" + fenced(SCALE_ACC),
        SCALE_ACC,
    ),
    Case(
        "two alternatives", "Gemma 3", SUM_JS,
        "Here are two ways to do it.\n\n**Option 1: `reduce`**\n\n"
        + fenced(SUM_JS_REDUCE, "javascript")
        + "\n\n**Option 2: `for...of` with destructuring**\n\n"
        + fenced(SUM_JS.replace("const item", "const { price }").replace("item.price", "price"),
                 "javascript"),
        SUM_JS_REDUCE,
    ),
    Case(
        "think block", "Qwen3", SCALE,
        "<think>\nThe user wants `total` renamed. The function is:\ndef scale(values, "
        "factor=10):\nI'll rename both uses and the return.\n</think>\n\n" + fenced(SCALE_ACC),
        SCALE_ACC,
    ),
    Case(
        "empty think block", "Qwen3", SCALE,
        "<think>\n\n</think>\n\n" + fenced(SCALE_ACC), SCALE_ACC,
    ),
    Case(
        "think opened by the template", "DeepSeek-R1-Distill-Qwen", SCALE,
        "Okay, so I need to rename `total` to `acc`. Let me look at the loop: `total += value` "
        "becomes `acc += value`.\n</think>\n\nHere is the code:\n\n" + fenced(SCALE_ACC),
        SCALE_ACC,
    ),
    Case(
        "think, then bare code", "QwQ", SCALE,
        "<think>\nRename it everywhere.\n</think>\n" + SCALE_ACC, SCALE_ACC,
    ),
    Case(
        "think cut off by the budget", "Qwen3", SCALE,
        "<think>\nLet me consider the loop first. The accumulator is", SCALE,
    ),
    Case("crlf region", "Qwen2.5-Coder", crlf(SCALE), fenced(SCALE_ACC), crlf(SCALE_ACC)),
    Case(
        "crlf answer", "Phi-4", SCALE,
        crlf("Here you go:\n\n" + fenced(SCALE_ACC) + "\n"), SCALE_ACC,
    ),
    Case(
        "crlf region, re-indented answer", "Codestral", crlf(ADD),
        fenced(ADD_TYPED_KEPT), crlf(ADD_TYPED_KEPT),
    ),
    Case(
        "cut off mid-line", "Qwen2.5-Coder", SCALE,
        "```python\ndef scale(values, factor=10):\n    acc = 0\n    result = []\n    for val",
        "def scale(values, factor=10):\n    acc = 0\n    result = []\n    for val",
    ),
    Case(
        "cut off in the closing fence", "DeepSeek-Coder", SCALE, fenced(SCALE_ACC)[:-1], SCALE_ACC,
    ),
    Case(
        "cut off before the code", "Llama 3", SCALE, "Here is the updated code:\n\n```pyth", SCALE,
    ),
    Case("tilde fence", "Granite", SCALE, fenced(SCALE_ACC, fence="~~~"), SCALE_ACC),
    Case(
        "four backticks around a docstring fence", "Qwen2.5-Coder", PARSE_DOC,
        "Added a `sep` parameter:\n\n" + fenced(PARSE_DOC_NEW, fence="````"), PARSE_DOC_NEW,
    ),
    Case(
        "indented fence lines in a docstring", "DeepSeek-Coder-V2", PARSE_DOC,
        fenced(PARSE_DOC_NEW) + "\n\nThe docstring example shows the new parameter.",
        PARSE_DOC_NEW,
    ),
    Case(
        "column-0 fences in a string", "Codestral", README,
        fenced(README_NEW, fence="````") + "\n\nThe version is now part of the title and the "
        "install command.",
        README_NEW,
    ),
    Case(
        "fence under a numbered list item", "Llama 3.2", SCALE,
        "1. Rename the variable:\n\n   "
        + fenced(SCALE_ACC).replace("\n", "\n   ")
        + "\n\n2. Update any callers that unpack the result.",
        SCALE_ACC,
    ),
    Case(
        "fence under a bullet", "Gemma 2", SUM_JS,
        "* Use `reduce`:\n  " + fenced(SUM_JS_REDUCE, "js").replace("\n", "\n  ") + "\n",
        SUM_JS_REDUCE,
    ),
    Case(
        "diff block", "Qwen2.5-Coder", SCALE,
        "```diff\n@@ -1,7 +1,7 @@\n def scale(values, factor=10):\n-    total = 0\n+    acc = 0\n"
        "     result = []\n     for value in values:\n         result.append(value * factor)\n"
        "-        total += value\n-    return result, total\n+        acc += value\n"
        "+    return result, acc\n```",
        SCALE_ACC,
    ),
    Case(
        "bare unified diff with headers", "Codestral", SCALE,
        "--- a/scale.py\n+++ b/scale.py\n@@ -2,1 +2,1 @@\n-    total = 0\n+    acc = 0\n"
        "@@ -6,2 +6,2 @@\n-        total += value\n-    return result, total\n"
        "+        acc += value\n+    return result, acc\n",
        SCALE_ACC,
    ),
    Case(
        "diff with wrong line numbers", "DeepSeek-Coder", SCALE,
        "Here's the patch:\n\n```diff\n--- scale.py\n+++ scale.py\n@@ -40,6 +40,7 @@\n"
        "         result.append(value * factor)\n         total += value\n"
        '+    logging.debug("scaled %d values", len(result))\n     return result, total\n```\n'
        "\nApply it with `git apply`.",
        SCALE_LOGGED,
    ),
    Case(
        "diff without hunk header", "Phi-3.5", SUM_JS,
        "The change is small:\n\n```diff\n function sum(items) {\n-  let total = 0;\n"
        "-  for (const item of items) {\n-    total += item.price;\n-  }\n-  return total;\n"
        "+  return items.reduce((total, item) => total + item.price, 0);\n }\n```",
        SUM_JS_REDUCE,
    ),
    Case(
        "diff that does not apply", "StarCoder2-Instruct", SCALE,
        "```diff\n@@ -1,2 +1,2 @@\n-    count = 0\n+    acc = 0\n```", SCALE,
    ),
    Case(
        "re-indented by the model", "Qwen2.5-Coder", ADD,
        "Here is the method with type hints:\n\n" + fenced(ADD_TYPED_KEPT), ADD_TYPED_KEPT,
    ),
    Case(
        "dedented answer for an indented region", "Llama 3", ADD,
        "Here you go:\n\n" + fenced(ADD_TYPED) + "\n\nThe hints make the contract explicit.",
        ADD_TYPED_KEPT,
    ),
    Case(
        "deeply indented region kept indented", "Gemma 2", RETRY,
        "```python\n        if retries > 5:\n            raise TimeoutError(\"gave up\")\n```\n",
        RETRY.replace("3", "5"),
    ),
    Case(
        "deeply indented region, dedented answer", "Mistral", RETRY,
        " ```python\nif retries > 5:\n    raise TimeoutError(\"gave up\")\n```",
        RETRY.replace("3", "5"),
    ),
    Case(
        "tab indentation restored", "DeepSeek-Coder", TABBED,
        fenced("def close(self):\n\tif self.handle:\n\t\tself.handle.close()"), TABBED_NEW,
    ),
    Case(
        "javascript", "Gemma 3", SUM_JS,
        "You can simplify this with `Array.prototype.reduce`:\n\n"
        + fenced(SUM_JS_REDUCE, "javascript")
        + "\n\nThis does the same thing in a single expression.",
        SUM_JS_REDUCE,
    ),
    Case(
        "typescript tag, no info on close", "Phi-4", SUM_JS,
        fenced(SUM_JS_REDUCE, "ts"), SUM_JS_REDUCE,
    ),
    Case(
        "rust", "Llama 3.1", AREA_RS,
        "To avoid overflow, use `checked_mul`:\n\n" + fenced(AREA_RS_CHECKED, "rust")
        + "\n\nThe function now returns `None` when the product does not fit in a `u32`.",
        AREA_RS_CHECKED,
    ),
    Case(
        "decorator added on top", "DeepSeek-Coder-V2", FIB,
        "You can memoize it with `functools.lru_cache`:\n\n" + fenced(FIB_CACHED)
        + "\n\nDon't forget `from functools import lru_cache`.",
        FIB_CACHED,
    ),
    Case(
        "import and decorator added", "Qwen2.5-Coder", FIB,
        fenced("import functools\n\n@functools.cache\n" + FIB),
        "import functools\n\n@functools.cache\n" + FIB,
    ),
    Case(
        "fence without info", "Llama 3", SCALE,
        "Here is the refactored code:\n\n" + fenced(SCALE_ACC, "") + "\n", SCALE_ACC,
    ),
    Case("empty answer", "any", SCALE, "", SCALE),
    Case(
        "refusal in prose", "Llama 3", SCALE,
        "I'm sorry, but I need more context to make that change. Could you share the callers?",
        SCALE,
    ),
    Case(
        "prose on the fence line's neighbour", "Mistral", SCALE,
        "The updated function is below.\n" + fenced(SCALE_ACC) + "\nHope this helps.", SCALE_ACC,
    ),
    Case(
        "granite with header", "Granite", SCALE,
        "**Updated code:**\n\n" + fenced(SCALE_ACC) + "\n\n**Changes made:**\n\n1. Renamed `total`"
        " to `acc`.",
        SCALE_ACC,
    ),
    Case("one-word opener", "Qwen2.5-Coder", SCALE, "Sure!\n\n" + fenced(SCALE_ACC), SCALE_ACC),
    Case(
        "markdown heading", "Granite", SCALE,
        "### Updated code\n\n" + fenced(SCALE_ACC) + "\n\n### Explanation\n\nRenamed.", SCALE_ACC,
    ),
    Case(
        "no fence, import added on top", "StarCoder2", SCALE,
        "import logging\n\n" + SCALE_LOGGED + "\n", "import logging\n\n" + SCALE_LOGGED,
    ),
]
