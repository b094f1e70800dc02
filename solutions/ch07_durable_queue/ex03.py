"""Exercise 7.3: an outbox relay that enqueues new rows and re-enqueues rows whose job was lost."""

import time
from collections.abc import Callable

from sqlalchemy import Column, Engine, Float, Integer, MetaData, Table, and_, or_, select, update

metadata = MetaData()
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer, nullable=False),
    Column("enqueued_at", Float),
    Column("done_at", Float),
)


def relay_outbox(engine: Engine, enqueue: Callable[[int], object], *, stale_after: float) -> int:
    cutoff = time.time() - stale_after
    waiting = or_(
        outbox.c.enqueued_at.is_(None),
        and_(outbox.c.done_at.is_(None), outbox.c.enqueued_at < cutoff),
    )
    with engine.connect() as connection:
        rows = connection.execute(select(outbox.c.id, outbox.c.order_id).where(waiting).order_by(outbox.c.id)).all()
    for row in rows:
        enqueue(row.order_id)  # first into the queue...
        with engine.begin() as connection:  # ...then marked: a crash in between re-sends, never loses
            connection.execute(update(outbox).where(outbox.c.id == row.id).values(enqueued_at=time.time()))
    return len(rows)
