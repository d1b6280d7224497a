"""The Python counterpart of integration/testagent, run as a real process by
the end-to-end tests and bench.py: it copies each event to an output topic
with headers naming its source, and can be told to fail on purpose.

    passagent.py --addr HOST:PORT --app APP --name pass --out TOPIC [--poison VALUE]
                 [--delay SECONDS] [--instance ID] [--credit N] [--token T] [--discovery SECONDS]
                 [--cacert FILE [--cert FILE --key FILE]]
"""

from __future__ import annotations

import argparse
import asyncio
import os

from eddy_agent import App, Event


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default=os.environ.get("EDDY_ADDR", "127.0.0.1:6066"))
    ap.add_argument("--app", default=None, help="the app file's app (default: $EDDY_APP)")
    ap.add_argument("--name", default="pass")
    ap.add_argument("--out", required=True)
    ap.add_argument("--instance", default=None)
    ap.add_argument("--poison", default="", help="events with this value raise ValueError")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds spent on each event")
    ap.add_argument("--credit", type=int, default=1000)
    ap.add_argument("--token", default=None)
    ap.add_argument("--discovery", type=float, default=5.0, help="seconds between lists of the app's workers (0: only --addr)")
    ap.add_argument("--cacert", default=None, help="TLS: CA file of the worker's certificate")
    ap.add_argument("--cert", default=None, help="TLS: client certificate file")
    ap.add_argument("--key", default=None, help="TLS: client key file")
    args = ap.parse_args()

    app = App(args.addr, app=args.app, token=args.token, instance_id=args.instance, credit_events=args.credit, discovery=args.discovery,
              tls_ca_file=args.cacert, tls_cert_file=args.cert, tls_key_file=args.key)
    poison = args.poison.encode()

    @app.agent(args.name)
    async def copy(ev: Event) -> None:
        if poison and ev.value == poison:
            raise ValueError(f"poison event at offset {ev.offset}")
        if args.delay > 0:
            await asyncio.sleep(args.delay)
        ev.emit(
            args.out,
            key=ev.key,
            value=ev.value,
            headers=[
                ("src.partition", str(ev.partition)),
                ("src.offset", str(ev.offset)),
                ("agent.sdk", "python"),
            ],
        )

    app.main(log_level=os.environ.get("EDDY_LOG_LEVEL", "INFO"))


if __name__ == "__main__":
    main()
