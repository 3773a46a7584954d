"""The test kit: run batcher in virtual time against the simulated API, with no sockets.

For batcher's own tests and for library users' tests of code that calls
``run_batch``::

    from batcher import Settings, run_batch
    from batcher.testing import FakeClock, SimulatorConfig, simulated_transport

    clock = FakeClock()
    transport = simulated_transport(SimulatorConfig(shared_limit=10), clock=clock)
    summary = run_batch("in.csv", settings=Settings(), token="t",
                        clock=clock, transport=transport)

``FakeClock`` runs the whole run on an event loop whose time jumps ahead whenever
every task is waiting: backoff, 449 requeues, 429 pauses, deadlines and the
simulator's latency cost no real time. ``simulated_transport`` answers with the
same rules as ``batcher simulate`` (``batcher.simrules``), in process, on the same
clock; its ``requests``, ``statuses`` and ``count()`` tell what the API saw.
"""

from __future__ import annotations

from batcher.simrules import SimulatorConfig
from batcher.simtransport import simulated_transport
from batcher.virtualtime import FakeClock

__all__ = ["FakeClock", "SimulatorConfig", "simulated_transport"]
