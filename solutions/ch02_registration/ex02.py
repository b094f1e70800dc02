"""Exercise 2.2: a blocking smtplib task that times out, retries a bounded number of times, and logs."""

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed


@dataclass
class Settings:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25


settings = Settings()
logger = logging.getLogger("mail")
TRANSIENT = (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError)


@retry(stop=stop_after_attempt(3), wait=wait_fixed(0.05), retry=retry_if_exception_type(TRANSIENT), reraise=True)
def deliver(message: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=0.5) as smtp:
        smtp.send_message(message)


def send_welcome_email(address: str) -> None:
    message = EmailMessage()
    message["From"] = "welcome@example.com"
    message["To"] = address
    message["Subject"] = "Welcome!"
    message.set_content("Your account is ready.")
    try:
        deliver(message)
    except Exception:
        logger.exception("welcome e-mail to %s not sent", address)
