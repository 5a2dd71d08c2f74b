"""A tiny DNS server on 127.0.0.1 (UDP, a thread) answering from a dict, for dnspython's real resolver.

`records[(name, "MX")] = ["10 inbound-smtp.us-east-1.amazonaws.com."]`; a name with no entry at all is
NXDOMAIN, a name with entries of other types only answers NOERROR with no records.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.asyncresolver
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Records = dict[tuple[str, str], list[str]]


def _answer(query: dns.message.Message, records: Records) -> dns.message.Message:
    response = dns.message.make_response(query)
    question = query.question[0]
    name = question.name.to_text().rstrip(".").lower()
    rdtype = dns.rdatatype.to_text(question.rdtype)
    if not any(n == name for n, _ in records):
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response
    values = records.get((name, rdtype), [])
    if values:
        response.answer.append(dns.rrset.from_text_list(question.name, 300, dns.rdataclass.IN, question.rdtype, values))
    return response


@contextmanager
def dns_server(records: Records) -> Iterator[dns.asyncresolver.Resolver]:
    """A resolver that asks only the stub (records are read live: tests may change them)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            sock.sendto(_answer(dns.message.from_wire(data), records).to_wire(), peer)

    thread = threading.Thread(target=serve, name="dns-stub", daemon=True)
    thread.start()
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = sock.getsockname()[1]
    resolver.lifetime = 3.0
    try:
        yield resolver
    finally:
        stop.set()
        thread.join()
        sock.close()
