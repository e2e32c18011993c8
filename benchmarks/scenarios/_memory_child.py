"""Child process for the memory scenario: a Python client that loads a room, then
reports its own RSS (``python -m benchmarks.scenarios._memory_child HOST ROOM CELLS``).

Why a separate process: the benchmark process holds servers' pipes, Node drivers and
earlier scenarios' garbage; only a fresh interpreter shows what *holding* the cells
costs. Everything the client needs is imported before the baseline is read, so the
difference is the data, and the total is what a user's kernel would carry.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys

from benchmarks.scenarios._env import PyClient, vm_rss_kib


async def main(host: str, room: str, cells: int) -> dict[str, int | None]:
    gc.collect()
    before = vm_rss_kib()
    client = await PyClient.connect(host, room, save=False, timeout=600)
    try:
        if client.cell_count() != cells:
            raise RuntimeError(f"loaded {client.cell_count()} cells, expected {cells}")
        gc.collect()
        after = vm_rss_kib()
    finally:
        await client.close()
    return {"before_kib": before, "after_kib": after}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))))
