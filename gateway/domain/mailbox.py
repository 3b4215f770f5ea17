"""Which e-mail addresses the gateway can actually send to, decided once for intake and mailer.

Our SMTP path is plain (no SMTPUTF8), so a mailbox name must be ASCII; a Cyrillic domain
(«пример.рф») is fine, sent in its IDNA form (xn--e1afmkfd.xn--p1ai). Intake refuses what
the mailer could never send, so no answer letter dies after the call was accepted.
"""

from __future__ import annotations

import idna

from gateway.errors import GatewayError


class NotSendable(GatewayError):
    """The address cannot be sent to over plain SMTP; the message says why, not the address."""


def smtp_mailbox(address: str) -> str:
    """The address as SMTP carries it: the local part unchanged, the domain in IDNA."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise NotSendable("not an e-mail address")
    if not local.isascii():
        raise NotSendable("the mailbox name (before @) must use Latin letters, digits and "
                          "punctuation only: our mail server cannot send to other names")
    try:
        ascii_domain = domain if domain.isascii() else idna.encode(domain, uts46=True).decode()
    except idna.IDNAError:
        raise NotSendable("the domain (after @) is not a valid domain name") from None
    return f"{local}@{ascii_domain.lower()}"
