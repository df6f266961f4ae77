"""``qpae-erase``: the erasure service from the command line.

    qpae-erase init MODEL_FILE dataset=fsdd paths.data=../shared/data [method=qpae ...]
    qpae-erase submit theo [lucas ...] [--requester TICKET-42]
    qpae-erase status [REQUEST_ID]
    qpae-erase run [--follow]
    qpae-erase history
    qpae-erase verify MODEL_FILE
    qpae-erase rollback VERSION_SHA256
    qpae-erase serve

Settings of the service are ``service.KEY=VALUE`` (conf/erase.yaml: service.root, service.ledger,
service.deployment, service.host, service.port, …). ``init`` keeps every other ``key=value`` as
the deployment's unlearning settings (the same keys as qpae-unlearn).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from qpae.cli.entry import VERBOSE_FLAG, take_verbose_flag, verbose
from qpae.cli.noise import quiet_known_noise

SERVICE_KEYS = ("service.", "paths.root=")
SETTING = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.]*=")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qpae-erase",
        description="The erasure service: a ledger of deletion requests, versioned models, a hash chain "
        "of receipts, instant masking, a queue worker and an HTTP API.",
        epilog="Service settings: service.root=DIR service.ledger=FILE service.deployment=NAME "
        "service.host=… service.port=… (conf/erase.yaml). --verbose: the full traceback of an error.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("init", help="start a deployment from a model file")
    p.add_argument("model_file")
    sub_submit = sub.add_parser(
        "submit", help="request that speakers be forgotten (by name); masks them at once"
    )
    sub_submit.add_argument("speakers", nargs="+", help="class names (a number is a name, never an index)")
    sub_submit.add_argument("--requester", help="your reference for the request (a ticket id)")
    p = sub.add_parser("status", help="a request's status, or the deployment's")
    p.add_argument("request_id", nargs="?", type=int)
    p = sub.add_parser("run", help="erase the queued requests in order")
    p.add_argument("--follow", action="store_true", help="keep waiting for new requests")
    p.add_argument("--max", type=int, default=None, help="stop after this many requests")
    sub.add_parser("history", help="every version and event of the deployment")
    p = sub.add_parser(
        "verify", help="is this file a registered version, and is the receipt chain intact? (exit 0/1)"
    )
    p.add_argument("model_file")
    p = sub.add_parser("rollback", help="point the deployment at an earlier version (recorded)")
    p.add_argument("version")
    sub.add_parser("serve", help="the HTTP API and a worker (make serve)")
    return parser


def _split(tokens: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(service overrides, run overrides, anything else) of the key=value tokens."""
    service, run, other = [], [], []
    for t in tokens:
        if not SETTING.match(t):
            other.append(t)
        elif t.startswith(SERVICE_KEYS):
            service.append(t)
        else:
            run.append(t)
    return service, run, other


def main(argv: list[str] | None = None) -> int:
    quiet_known_noise()
    argv = list(sys.argv[1:] if argv is None else argv)
    if take_verbose_flag(argv):
        os.environ["QPAE_VERBOSE"] = "1"
    # key=value tokens are settings wherever they stand (a speaker named like one: use the API)
    service_overrides, run_overrides, positional = _split(argv)
    args = _parser().parse_args(positional)
    if run_overrides and args.action != "init":
        _parser().error(
            f"{' '.join(run_overrides)}: only `init` takes unlearning settings; service settings are service.KEY=VALUE"
        )
    try:
        return _run(args, service_overrides, run_overrides)
    except Exception as err:
        from qpae.cli.entry import is_user_error, root_cause
        from qpae.service.ledger import LedgerError
        from qpae.service.service import RefusedError

        cause = root_cause(err)
        if verbose() or not (isinstance(cause, RefusedError | LedgerError) or is_user_error(cause)):
            raise
        print(f"error: {cause}", file=sys.stderr)
        print(f"(run again with {VERBOSE_FLAG} for the full traceback)", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, service_overrides: list[str], run_overrides: list[str]) -> int:
    from qpae.pipeline.config import compose
    from qpae.service.service import ErasureService, check_initial

    cfg = compose("erase", service_overrides)
    service_cfg = cfg.service
    deployment = str(service_cfg.deployment)
    if args.action == "init":
        settings = _deployment_settings(run_overrides)  # checked before anything is created
        check_initial(deployment, args.model_file)
        service = ErasureService(service_cfg.root, service_cfg.ledger, create=True)
        version = service.init(deployment, args.model_file, *settings)
        print(
            f"deployment {deployment!r} starts from version {version.sha256} "
            f"({service.registry.model_path(version.sha256)})"
        )
        return 0
    service = ErasureService(service_cfg.root, service_cfg.ledger)

    if args.action == "submit":
        request = service.submit(deployment, args.speakers, args.requester)
        _print(request.public())
        print(
            f"masked {1000 * request.public().get('seconds_to_masked', 0):.0f} ms after arrival; "
            "the worker erases it next (qpae-erase run)",
            file=sys.stderr,
        )
        return 0
    if args.action == "status":
        if args.request_id is not None:
            _print(service.ledger.request(args.request_id).public())
        else:
            current = service.ledger.current(deployment)
            _print(
                {
                    "deployment": deployment,
                    "current": current.public(),
                    "queue": [r.public() for r in service.ledger.requests(deployment, ("queued", "running"))],
                    "failed": [r.public() for r in service.ledger.requests(deployment, ("failed",))],
                    "chain_head": service.chain_head(),
                    "chain": service.chain_problem() or "intact",
                }
            )
        return 0
    if args.action == "run":
        from qpae.service.worker import Worker

        done = Worker(service, deployment).run(
            follow=args.follow, poll_s=float(service_cfg.poll_s), max_requests=args.max
        )
        print(f"processed requests {done or 'none'}", file=sys.stderr)
        return 0
    if args.action == "history":
        _print(
            {
                "deployment": deployment,
                "versions": [v.public() for v in service.ledger.versions(deployment)],
                "events": service.ledger.events(deployment),
            }
        )
        return 0
    if args.action == "verify":
        verdict = service.verify(args.model_file)
        print(("OK: " if verdict.ok else "FAILED: ") + verdict.reason)
        return 0 if verdict.ok else 1
    if args.action == "rollback":
        version = service.rollback(deployment, args.version)
        print(f"current is now {version.sha256} ({version.kind})")
        return 0
    if args.action == "serve":
        from qpae.service.server import serve, worker_command

        token = os.environ.get(str(service_cfg.token_env), "")
        if not token:
            print(
                f"error: set {service_cfg.token_env} to the API's bearer token (16 characters or more)",
                file=sys.stderr,
            )
            return 2
        serve(
            service,
            deployment,
            str(service_cfg.host),
            int(service_cfg.port),
            token,
            worker_command(service_overrides),
        )
        return 0
    raise AssertionError(args.action)


def _deployment_settings(run_overrides: list[str]) -> tuple[list[str], str, bool | None, list[str]]:
    """(overrides, method, purge, certify overrides) of ``init``: checked by composing them as a
    run (and, with ``certify.n=N``, a certification) would."""
    import hydra
    from hydra.errors import HydraException

    from qpae.pipeline.config import compose

    method, purge, kept, certify = "qpae", None, [], []
    for o in run_overrides:
        key, _, value = o.partition("=")
        if key.startswith("certify."):
            certify.append(o)
        elif key == "method":
            method = value
        elif key == "purge":
            if value not in ("true", "false", "null"):
                raise ValueError(f"purge must be true, false or null, got {value!r}")
            purge = None if value == "null" else value == "true"
        elif key in ("input", "output_dir", "forget", "forget_index", "requests", "requests_index"):
            raise ValueError(f"{key}= is set by the service for each request, not at init")
        else:
            kept.append(o)
    # a typo in a setting fails now, not in the worker hours later
    try:
        cfg = compose("unlearn", ["logger=none", *kept, f"method={method}", "paths.output_dir=/nonexistent"])
    except HydraException as err:
        raise ValueError(f"the deployment's settings do not compose: {str(err).splitlines()[0]}") from None
    hydra.utils.instantiate(cfg.unlearn)
    if certify:
        if not any(o.startswith("certify.n=") for o in certify):
            raise ValueError(
                "certify.* settings certify each erasure only with certify.n=N (models per ensemble)"
            )
        skip = ("logger", "record_latest")
        certify_run = [o for o in kept if o.partition("=")[0].lstrip("+~") not in skip]
        try:
            compose("certify", [*certify_run, *certify, f"method={method}", "paths.output_dir=/nonexistent"])
        except HydraException as err:
            raise ValueError(f"the certify.* settings do not compose: {str(err).splitlines()[0]}") from None
    return kept, method, purge, certify


def _print(obj: dict) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
