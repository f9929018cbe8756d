#!/usr/bin/env python3
"""An SMTP server for the tests (alerts in tests/dashboard.rs, letters by e-mail in
tests/referrers.rs): takes every message sent to it (aiosmtpd from PyPI, plain SMTP on
127.0.0.1) and appends each as one JSON line to the file given: the envelope's sender and
recipients, the headers, the text body, and each attachment (its file name, type and content
in base64). A recipient whose address starts "busy." is refused for now (451), one starting
"refuses." for good (550), so the tests can see retries and refusals.

Usage: smtp_receiver.py OUT.jsonl   prints "listening on PORT" once ready, then serves until killed.
"""
import base64
import email
import email.policy
import json
import socket
import sys
import threading

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, out_path):
        self.out_path = out_path

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("busy."):
            return "451 4.2.1 Mailbox busy, try again later"
        if address.startswith("refuses."):
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        attachments = [
            {
                "filename": part.get_filename(),
                "contentType": part.get_content_type(),
                "base64": base64.b64encode(part.get_payload(decode=True) or b"").decode(),
            }
            for part in message.iter_attachments()
        ]
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in message.items()},
            "body": body.get_content() if body is not None else "",
            "attachments": attachments,
        }
        with open(self.out_path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    port = free_port()
    controller = Controller(Recorder(sys.argv[1]), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"listening on {port}", flush=True)
    # The controller serves on a thread of its own; this one only waits to be killed.
    threading.Event().wait()


if __name__ == "__main__":
    main()
