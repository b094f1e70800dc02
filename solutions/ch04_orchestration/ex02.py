"""Exercise 4.2: notify every service at once; a failure is reported and logged, never fatal."""

import asyncio
import logging

import httpx

logger = logging.getLogger("tasks")


async def notify_all(urls: list[str], event: dict[str, str]) -> dict[str, str]:
    async with httpx.AsyncClient() as client:

        async def notify(url: str) -> None:
            response = await client.post(url, json=event)
            response.raise_for_status()

        outcomes = await asyncio.gather(*(notify(url) for url in urls), return_exceptions=True)
    results: dict[str, str] = {}
    for url, outcome in zip(urls, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            logger.error("notifying %s failed", url, exc_info=outcome)
            results[url] = "failed"
        else:
            results[url] = "ok"
    return results
