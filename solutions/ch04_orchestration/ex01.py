"""Exercise 4.1: a retried charge, bounded, logged, and safe to retry thanks to one key per order."""

import logging

import httpx
from tenacity import before_sleep_log, retry, retry_if_exception, stop_after_attempt, wait_exponential

logger = logging.getLogger("tasks")


def worth_retrying(error: BaseException) -> bool:
    """A request or answer that did not get through, or "not now" (5xx, 429); never another 4xx."""
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status == 429
    return isinstance(error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))


@retry(
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.05, max=0.5),
    retry=retry_if_exception(worth_retrying),
    before_sleep=before_sleep_log(logger, logging.WARNING),
    reraise=True,
)
async def charge_order(provider_url: str, order_id: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post(
            "/charges",
            params={"order_id": order_id, "amount": amount},
            headers={"Idempotency-Key": f"charge-{order_id}"},  # one key per order, not per attempt
        )
        response.raise_for_status()
