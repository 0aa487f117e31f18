"""The ``rfalint`` process: ``python -m rfalint`` and the ``rfalint`` console script.

Importing torch creates about a million objects that live until the process ends. Python's
cyclic garbage collector walks all of them on every full collection triggered while the
imports run, and once more at exit: about as long as the whole analysis of a ResNet (see
``benchmarks/bench_process.py``). So the process imports with the collector off, then moves
everything imported into the permanent generation (:func:`gc.freeze`) and turns the
collector back on: the user's model, the capture and the reports are collected as usual.
Before exiting it freezes again, so the exit does not walk the model and graph either.
In-process callers (tests, notebooks) use :func:`rfalint.cli.main` and keep the collector
as they set it.
"""

import gc
import sys


def main() -> None:
    gc.disable()
    from rfalint import cli
    gc.freeze()
    gc.enable()
    try:
        cli.main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
