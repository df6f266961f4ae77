"""How an entry point fails: one line a person can act on, the traceback only when asked.

A run stopped by bad input (a missing dataset, an unknown class, an occupied output folder, a
model of other data) prints the reason and exits with status 2. ``--verbose`` (or Hydra's own
``HYDRA_FULL_ERROR=1``) prints the whole traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from hydra.errors import InstantiationException

from qpae.cli.follow_on import follow_on
from qpae.cli.noise import quiet_known_noise

# What bad input raises; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError)
VERBOSE_FLAG = "--verbose"


def take_verbose_flag(argv: list[str]) -> bool:
    """Remove ``--verbose`` from ``argv`` (Hydra would reject it); True when it was there."""
    if VERBOSE_FLAG in argv:
        argv.remove(VERBOSE_FLAG)
        return True
    return False


def verbose() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("QPAE_VERBOSE") == "1"


def root_cause(err: BaseException) -> BaseException:
    """Hydra wraps a constructor's error in InstantiationException: report the original."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err


def friendly_errors(task: Callable) -> Callable:
    """Wrap a Hydra task: a user error becomes one message on stderr and exit status 2."""

    @functools.wraps(task)
    def wrapper(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except (*USER_ERRORS, InstantiationException) as err:
            if verbose():
                raise
            cause = root_cause(err)
            if not isinstance(cause, USER_ERRORS):
                raise
            print(f"error: {cause}", file=sys.stderr)
            print(f"(run again with {VERBOSE_FLAG} for the full traceback)", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def entry_point(hydra_main: Callable, command: str | None = None) -> Callable[[], None]:
    """A console-script ``main``: handles ``--verbose`` and, for commands that follow on from
    pretraining (``command``), the latest run's settings; then runs the Hydra app."""

    def main() -> None:
        quiet_known_noise()
        if take_verbose_flag(sys.argv):
            os.environ["QPAE_VERBOSE"] = "1"
            os.environ["HYDRA_FULL_ERROR"] = "1"
        flags = [a for a in sys.argv[1:] if a.startswith("-")]
        if command and not flags:  # --help, --cfg, -m …: leave Hydra's own modes alone
            overrides, message = follow_on(sys.argv[1:], command)
            if message and os.environ.get("LOCAL_RANK", "0") == "0":
                print(message)
            sys.argv[1:] = overrides
        hydra_main()

    return main
