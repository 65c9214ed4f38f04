"""Hive drivers: which one process drives each hive, as a lease taken by compare-and-set.
Depends on the core model and ruflo.store.core.
"""

from __future__ import annotations

import time
from datetime import datetime

from ruflo.errors import NotFound
from ruflo.model import HiveDriver
from ruflo.store.core import SqlCore
from ruflo.store.rows import DRIVER_COLS, epoch, read_driver


class SqlDrivers(SqlCore):
    """Hive drivers, in SQL."""

    def take_hive(self, driver: HiveDriver, *, lease_seconds: float,
                  now: datetime | None = None) -> HiveDriver:
        at = time.time() if now is None else epoch(now)
        assert at is not None
        with self.transaction():
            # One upsert on both databases: the row's lock (Postgres) or the write lock
            # (SQLite) makes the look at the current driver and the take one step.
            taken = self._exec(
                "INSERT INTO hive_drivers (hive_id, instance, host, pid, driving_since, "
                "driver_until) SELECT id, ?, ?, ?, ?, ? FROM hives WHERE id = ? "
                "ON CONFLICT (hive_id) DO UPDATE SET instance = excluded.instance, "
                "host = excluded.host, pid = excluded.pid, driving_since = CASE WHEN "
                "hive_drivers.instance = excluded.instance THEN hive_drivers.driving_since "
                "ELSE excluded.driving_since END, driver_until = excluded.driver_until "
                "WHERE hive_drivers.instance = excluded.instance OR hive_drivers.driver_until <= ? "
                f"RETURNING {DRIVER_COLS}",
                (driver.instance, driver.host, driver.pid, at, at + lease_seconds,
                 driver.hive_id, at)).fetchone()
            if taken is not None:
                return read_driver(taken)
            current = self.hive_driver(driver.hive_id)
        if current is None:
            raise NotFound(f"no hive {driver.hive_id!r}")
        return current

    def release_hive(self, hive_id: str, instance: str) -> bool:
        with self.transaction():
            return bool(self._exec("DELETE FROM hive_drivers WHERE hive_id = ? AND instance = ?",
                                   (hive_id, instance)).rowcount == 1)

    def hive_driver(self, hive_id: str) -> HiveDriver | None:
        row = self._one(f"SELECT {DRIVER_COLS} FROM hive_drivers WHERE hive_id = ?", (hive_id,))
        return None if row is None else read_driver(row)
