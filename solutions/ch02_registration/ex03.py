"""Exercise 2.3: a test of the registration endpoint: 201 without the password, 409, the e-mail."""

import httpx

from bgcourse import MailServer

GRACE = {"username": "grace", "email": "grace@example.com", "password": "correct horse battery staple"}


def test_registration(client: httpx.Client, mail: MailServer) -> None:
    first = client.post("/register", json=GRACE)
    assert first.status_code == 201, first.text
    assert first.json() == {"username": "grace", "email": "grace@example.com"}
    again = client.post("/register", json=GRACE)
    assert again.status_code == 409, again.text
    (welcome,) = mail.wait_for(1, timeout=2)
    assert welcome["To"] == "grace@example.com"
