#!/usr/bin/env python3
"""Run one fuzz target under atheris (libFuzzer, coverage-guided).

    python3 tests/fuzz/run.py TARGET [libFuzzer options...]
    python3 tests/fuzz/run.py rule_sql -max_total_time=600

New inputs that reach new code go to corpus/TARGET/ (start from what is there),
crashes to crashers/TARGET/ (each then replays in tests/fuzz/test_corpus.py).
Run it from the repository root with PYTHONPATH set to it; see README.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # helpers (the in-memory connection)

with atheris.instrument_imports(include=["starling"]):
    import targets

    import starling.node  # noqa: F401  (the API and broker: imported lazily by targets)


def main() -> None:
    # libFuzzer runs this file again for -merge, -jobs, ... with its own flags only:
    # the target then comes from the environment the first run set.
    if len(sys.argv) > 1 and sys.argv[1] in targets.TARGETS:
        name = sys.argv.pop(1)
        os.environ["STARLING_FUZZ_TARGET"] = name
    else:
        name = os.environ.get("STARLING_FUZZ_TARGET", "")
    if name not in targets.TARGETS:
        sys.exit(f"usage: run.py {{{','.join(targets.TARGETS)}}} [libFuzzer options]")
    corpus = HERE / "corpus" / name
    crashers = HERE / "crashers" / name
    corpus.mkdir(parents=True, exist_ok=True)
    crashers.mkdir(parents=True, exist_ok=True)
    args = list(sys.argv)
    if not any(a.startswith("-artifact_prefix=") for a in args):
        args.append(f"-artifact_prefix={crashers}/")
    dictionary = HERE / f"{name}.dict"
    if dictionary.exists() and not any(a.startswith("-dict=") for a in args):
        args.append(f"-dict={dictionary}")
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(str(corpus))
    target = targets.TARGETS[name]
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
