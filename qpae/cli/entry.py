"""How an entry point starts and how it fails.

Start: ``--verbose`` is taken off the command line, known noise is quieted, and a command that
follows on from pretraining gets the latest run's settings (:mod:`qpae.cli.follow_on`).

Failure: an error qpae raised on purpose — bad input, with a message written for a person (a
missing dataset, an unknown class, an occupied output folder, a model of other data), or a
configuration that Hydra/Lightning reject — prints that message in one line and exits with status
2. Anything raised inside torch, Lightning or other libraries is a bug or an environment problem
and keeps its traceback. ``--verbose`` (or ``HYDRA_FULL_ERROR=1``) always prints the traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

import qpae
from qpae.cli.follow_on import follow_on
from qpae.cli.noise import quiet_known_noise
from qpae.pipeline.config import is_rank_zero

# raised by qpae's own checks (the last frame is qpae's code) with a message for the user
CHECK_ERRORS = (ValueError, OSError, RuntimeError, FloatingPointError)


def config_errors() -> tuple[type[BaseException], ...]:
    """Errors of a configuration that the libraries reject: the user's to fix. Lightning's is
    looked up only once Lightning is loaded (an error before that cannot be one), so that
    ``--help`` and refused input do not wait for Lightning's imports."""
    lightning_errors = sys.modules.get("lightning.fabric.utilities.exceptions")
    extra = (lightning_errors.MisconfigurationException,) if lightning_errors else ()
    return (MissingMandatoryValue, *extra)


VERBOSE_FLAG = "--verbose"
PACKAGE_DIR = Path(qpae.__file__).resolve().parent


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


def raised_by_qpae(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is qpae's own code (not a library's)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE_DIR)


def is_user_error(err: BaseException) -> bool:
    if isinstance(err, NotImplementedError):
        return False
    if isinstance(err, config_errors()):
        return True
    return isinstance(err, CHECK_ERRORS) and raised_by_qpae(err)


def friendly_errors(task: Callable) -> Callable:
    """Wrap a Hydra task: a user error becomes one message on stderr and exit status 2."""

    @functools.wraps(task)
    def wrapper(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except Exception as err:
            cause = root_cause(err)
            if verbose() or not is_user_error(cause):
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
        asks_help = any(a in ("--help", "-h", "--hydra-help") for a in sys.argv[1:])
        if command and not asks_help:
            overrides, message = follow_on(sys.argv[1:], command)
            if message and is_rank_zero():
                print(message)
            sys.argv[1:] = overrides
        hydra_main()

    return main
