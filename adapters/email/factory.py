"""The SMTP mailer as the gateway's settings describe it: the one place it is built."""

from __future__ import annotations

from adapters.email.mailer import SmtpMailer, SmtpSettings, TlsMode
from config import settings as config


def build(settings: config.SmtpSettings) -> SmtpMailer:
    return SmtpMailer(SmtpSettings(
        host=settings.host, port=settings.port, sender=settings.sender,
        tls=TlsMode(settings.security), username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        command_timeout_s=settings.timeout_s,
    ))
