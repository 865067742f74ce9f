"""Which of our Python files one refine crosses: from `Handlers.refine` to the next status.

The language server's layering is judged by how many files a reader follows for one refine,
from the editor's request to the forward pass and back (docs/design.md). This measures it the
same way each time: it starts a real `copyspec-lsp` (the demo model unless --model) with a
tracer on its PYTHONPATH (a `sitecustomize`), which, in every thread, notes the file of each
function called from the first call into `Handlers.refine` until `Handlers.status` runs next.
The client is scripts/lsp_smoke.py's: one refine of a small function, streamed and applied.

    python scripts/refine_trace.py [--model PATH] [--json]

prints the files by package, and their count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lsp_smoke import Server, refine, start

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("copyspec_lsp", "engine")
TRACER = '''
import os, sys, threading
_out = os.environ["COPYSPEC_TRACE_OUT"]
_roots = tuple(os.environ["COPYSPEC_TRACE_ROOTS"].split(os.pathsep))
_on, _seen = [False], set()

def _trace(frame, event, arg):
    code = frame.f_code
    name = code.co_filename
    if name.endswith(os.path.join("handlers", "methods.py")):
        if code.co_name == "refine":
            _on[0] = True
        elif code.co_name == "status" and _on[0]:
            _on[0] = False
            with open(_out + ".done", "w"):
                pass
    if _on[0] and name.startswith(_roots) and name not in _seen:
        _seen.add(name)
        with open(_out, "a") as out:
            out.write(name + "\\n")
    return None

sys.settrace(_trace)
threading.settrace(_trace)
'''
DEADLINE = 300.0


def crossed(model: str) -> list[str]:
    """The files one refine crosses, relative to the repository, in the order first seen."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "sitecustomize.py").write_text(TRACER, encoding="utf-8")
        out = Path(folder, "files.txt")
        roots = os.pathsep.join(str(ROOT / package) + os.sep for package in PACKAGES)
        env = {**os.environ, "COPYSPEC_TRACE_OUT": str(out), "COPYSPEC_TRACE_ROOTS": roots,
               "PYTHONPATH": os.pathsep.join([folder, os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "copyspec_lsp", "--model", model, "--device", "cpu"]
        server = Server(command, Path(folder, "server.log"), env=env)
        deadline = time.monotonic() + DEADLINE
        try:
            start(server, deadline)
            refine(server, deadline)
            server.call("copyspec/status", {}, deadline)
            if not Path(str(out) + ".done").exists():
                raise RuntimeError("the tracer never saw the status that ends the refine")
            files = out.read_text(encoding="utf-8").splitlines()
        finally:
            server.process.kill()
            server.process.wait()
    return [str(Path(name).relative_to(ROOT)) for name in files]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "engine" / "models" / "demo"))
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    args = parser.parse_args()
    files = crossed(args.model)
    if args.json:
        print(json.dumps(files, indent=1))
        return 0
    for package in PACKAGES:
        mine = sorted(f for f in files if f.startswith(package + os.sep))
        print(f"{package}: {len(mine)} files")
        for name in mine:
            print(f"  {name}")
    print(f"one refine crosses {len(files)} Python files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
