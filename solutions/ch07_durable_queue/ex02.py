"""Exercise 7.2: send an order's receipt at most once, however often its job is delivered."""

import sqlite3
from collections.abc import Callable


def deliver_once(db_path: str, order_id: str, send: Callable[[str], object]) -> bool:
    connection = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        connection.execute("create table if not exists deliveries (order_id text primary key)")
        # BEGIN IMMEDIATE takes SQLite's write lock now: a second worker with the same job
        # waits here until this one has committed (or rolled back), then finds the row.
        connection.execute("begin immediate")
        try:
            claimed = connection.execute("insert or ignore into deliveries values (?)", (order_id,)).rowcount == 1
            if claimed:
                send(order_id)
        except BaseException:
            connection.execute("rollback")  # send failed: no record, so the retry sends
            raise
        connection.execute("commit")
        return claimed
    finally:
        connection.close()
