"""Chat messages per second from one XMPP client connection to the loopback gateway.

    .venv/bin/python bench/xmpp_bench.py --messages 2000 [--record]

Starts Prosody on loopback (tests/peers/prosody.py) and ``twistd -n smsd``
(tests/process.py's SmsdProcess) as its component, with the loopback gateway and
``trusted_domains = ["example.org"]``; one slixmpp client logged in as
alice@example.org sends ``--messages`` chat messages, each to its own number, as
fast as its connection takes them, each asking for a delivery receipt.
``sent_per_s`` is messages per second of wall time from the first send until the
loopback gateway has sent them all (chat -> Prosody -> component -> commit with
fsync -> dispatcher -> gateway); ``receipts_per_s`` until the client also has
every XEP-0184 receipt back (-> delivery report -> receipt -> Prosody -> client).

One JSON line on stdout (and in bench/results.jsonl with ``--record``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import slixmpp  # noqa: E402
import slixmpp.exceptions  # noqa: E402

from tests.peers.prosody import Prosody  # noqa: E402
from tests.process import SmsdProcess  # noqa: E402

DOMAIN = "sms.example.org"
CONFIG = """
[smsd]
traffic_log = ""
domain = "sms.example.org"
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
[snpp]
listen = []
[sip]
listen = []
[xmpp]
server = "tcp:127.0.0.1:%(component)d"
secret = "component-secret"
trusted_domains = ["example.org"]
[[gateway]]
id = "loopback"
type = "loopback"
latency = "1ms"
report_delay = "50ms"
"""


async def chat(port: int, count: int, sent: Any) -> dict[str, float]:
    """Log in, send ``count`` messages, wait for the gateway and the receipts."""
    x = slixmpp.ClientXMPP(
        "alice@example.org/bench",
        "chat-pass",
        plugin_config={"feature_mechanisms": {"unencrypted_plain": True}},
    )
    x.enable_direct_tls = x.enable_starttls = False
    x.enable_plaintext = True
    x.register_plugin("xep_0184", {"auto_request": False, "auto_ack": False})
    ready = asyncio.get_running_loop().create_future()
    receipts: set[str] = set()
    all_back = asyncio.Event()

    def receipt(m: Any) -> None:
        receipts.add(m["receipt"])
        if len(receipts) >= count:
            all_back.set()

    x.add_event_handler("session_start", lambda _: ready.set_result(None))
    x.add_event_handler("receipt_received", receipt)
    x.connect("127.0.0.1", port)
    await asyncio.wait_for(ready, 30)
    x.send_presence()
    for _ in range(100):  # the component is connected once its disco#info answers
        iq = x.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#info", ito=DOMAIN)
        try:
            await iq.send(timeout=5)
            break
        except slixmpp.exceptions.IqError:
            await asyncio.sleep(0.1)
    started = time.monotonic()
    for i in range(count):
        m = x.make_message(mto=f"+1555{i:07d}@{DOMAIN}", mbody=f"chat {i}: build is green")
        m["id"] = f"b{i}"
        m["request_receipt"] = True
        m.send()
        if i % 100 == 99:
            await asyncio.sleep(0)  # let the send queue drain
    while sent() < count:
        if time.monotonic() - started > 300:
            raise SystemExit(f"only {sent()} of {count} sent after 300 s")
        await asyncio.sleep(0.05)
    at_gateway = time.monotonic() - started
    await asyncio.wait_for(all_back.wait(), 300)
    back = time.monotonic() - started
    await x.disconnect()
    return {"at_gateway": at_gateway, "receipts": back}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--record", action="store_true")
    args = p.parse_args()

    prosody = Prosody(component_domain=DOMAIN)
    prosody.add_user("alice", "chat-pass")
    smsd = SmsdProcess(CONFIG % {"component": prosody.component_port})
    result: dict[str, Any] = {
        "bench": "xmpp",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "messages": args.messages,
        "connections": 1,
    }
    try:
        prosody.start()
        smsd.admin("user", "add", "alice", "--password", "unused", "--email", "a@example.org")
        smsd.start()

        def sent() -> int:
            _, health = smsd.get("/api/v1/health")
            return sum(g.get("sent_parts", 0) for g in health.get("gateways", []))

        times = asyncio.run(chat(prosody.c2s_port, args.messages, sent))
        result.update(
            sent_per_s=round(args.messages / times["at_gateway"]),
            receipts_per_s=round(args.messages / times["receipts"]),
            seconds=round(times["receipts"], 2),
        )
    finally:
        smsd.cleanup()
        prosody.close()
    line = json.dumps(result)
    print(line)
    if args.record:
        with open(os.path.join(HERE, "results.jsonl"), "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
