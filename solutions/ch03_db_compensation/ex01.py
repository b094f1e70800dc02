"""Exercise 3.1: the user and the billing call in one transaction, so a refusal leaves nothing to undo."""

from fastapi import FastAPI, HTTPException, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks.ch03_db_compensation import BillingError, User, create_billing_account


def make_app(sessions: async_sessionmaker[AsyncSession]) -> FastAPI:
    app = FastAPI()

    @app.post("/register", status_code=status.HTTP_201_CREATED)
    async def register(email: str) -> dict[str, int]:
        try:
            async with sessions.begin() as session:
                user = User(email=email)
                session.add(user)
                await session.flush()
                await create_billing_account(email)
        except BillingError as error:
            raise HTTPException(status_code=status.HTTP_502_BAD_GATEWAY, detail=str(error)) from error
        return {"user_id": user.id}

    return app
