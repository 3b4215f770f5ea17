"""The mailbox reader's IMAP client as the gateway's settings describe it."""

from __future__ import annotations

from adapters.email.imap import ImapMailbox, ImapSecurity, ImapSettings
from config import settings as config


def build(settings: config.ImapSettings) -> ImapMailbox | None:
    """None when no mailbox is configured: replies are then recorded by hand."""
    if not settings.host or settings.username is None or settings.password is None:
        return None
    return ImapMailbox(ImapSettings(
        host=settings.host, port=settings.port, username=settings.username,
        password=settings.password.get_secret_value(),
        security=ImapSecurity(settings.security), folder=settings.folder,
        timeout_s=settings.timeout_s, validate_certs=settings.validate_certs,
        ca_file=str(settings.ca_file) if settings.ca_file else None,
        delete_processed=settings.delete_processed,
        max_message_bytes=int(settings.max_message_mb * 1024 * 1024),
        max_attachment_bytes=int(settings.max_attachment_mb * 1024 * 1024),
    ))
