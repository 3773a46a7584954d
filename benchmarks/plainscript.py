"""A typical plain script, for comparison: ``AsyncLimiter(R, 1)`` + httpx, sleeping
``Retry-After`` on a 429, 8 tasks.

    python benchmarks/plainscript.py BASE_URL INPUT.csv RATE

It uses aiolimiter, which batcher itself depends on.
"""

from __future__ import annotations

import asyncio
import csv
import sys

import httpx
from aiolimiter import AsyncLimiter

TASKS = 8


def read_rows(path: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as file:
        return [(r["identifier"], r["status"]) for r in csv.DictReader(file)]


async def main(base_url: str, rows: list[tuple[str, str]], rate: float) -> int:
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)
    limiter = AsyncLimiter(rate, 1)
    headers = {"Authorization": "Bearer bench-token"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:

        async def worker() -> None:
            while not queue.empty():
                identifier, status = queue.get_nowait()
                while True:
                    async with limiter:
                        answer = await client.post(
                            f"/contact/{identifier}/conversation/status", json={"status": status}
                        )
                    if answer.status_code != 429:
                        break
                    await asyncio.sleep(float(answer.headers.get("retry-after", "1")))

        await asyncio.gather(*(worker() for _ in range(TASKS)))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], read_rows(sys.argv[2]), float(sys.argv[3]))))
