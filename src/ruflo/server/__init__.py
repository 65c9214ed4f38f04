"""The web side of ruflo: the ruvocal-shaped chat API, the hive API, live event streams, probes
and auth. Depends on the store, the gateway and a hive runner, all handed in by `create_app`.
"""

from ruflo.server.app import create_app
from ruflo.server.hive_runner import HiveRunner, StoreRunner

__all__ = ["HiveRunner", "StoreRunner", "create_app"]
