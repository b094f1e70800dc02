"""Exercise 2.1: an audit-log task that is written even when the welcome e-mail fails."""

from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from fastapi import BackgroundTasks, FastAPI, status
from pydantic import BaseModel, EmailStr


@dataclass
class Settings:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25


class NewUser(BaseModel):
    username: str
    email: EmailStr


settings = Settings()
audit_log: list[str] = []
app = FastAPI()


async def send_welcome_email(address: str) -> None:
    message = EmailMessage()
    message["From"] = "welcome@example.com"
    message["To"] = address
    message["Subject"] = "Welcome!"
    message.set_content("Your account is ready.")
    await aiosmtplib.send(message, hostname=settings.smtp_host, port=settings.smtp_port, timeout=5)


def audit(entry: str) -> None:
    audit_log.append(entry)


@app.post("/register", status_code=status.HTTP_201_CREATED)
async def register(new_user: NewUser, background_tasks: BackgroundTasks) -> dict[str, str]:
    # The audit task goes first: if the e-mail task raises, the tasks after it are skipped.
    background_tasks.add_task(audit, f"registered {new_user.username}")
    background_tasks.add_task(send_welcome_email, new_user.email)
    return {"username": new_user.username}
