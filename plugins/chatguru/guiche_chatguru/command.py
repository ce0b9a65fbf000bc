"""`guiche chatguru catalog --company SLUG [--channel ID]`: the full-history catalog from a
terminal, with a progress bar; Ctrl+C cancels the job (checkpoints kept: a later run
resumes where this one stopped and adds nothing twice).

The job is the same as `POST .../accounts/{id}/catalog` starts (one per account at a
time, visible to the API and the company's sockets while it runs); the command runs it
in its own process instead of a worker's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import uuid
from typing import Any, TextIO

from guiche.plugin import ApiError, CommandSpec, active_channels, load_channel
from guiche_chatguru import catalog
from guiche_chatguru.adapter import CHANNEL_TYPE

REFRESH_SECONDS = 0.5
BAR_WIDTH = 30


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channel", type=uuid.UUID, help="the ChatGuru channel's id (default: the only one)"
    )


async def run(services: Any, args: argparse.Namespace) -> int:
    channel_id = args.channel or await _only_channel(services, args.tenant_id)
    if channel_id is None:
        return 1
    channel = await load_channel(services, channel_id, tenant_id=args.tenant_id)
    if channel is None or channel.info.type != CHANNEL_TYPE:
        print(f"error: the company has no ChatGuru channel {channel_id}", file=sys.stderr)
        return 1
    try:
        job_id = await catalog.create_job(args.tenant_id, channel_id)
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    worker = asyncio.create_task(catalog.run_catalog(str(job_id), services))
    try:
        while not worker.done():
            await _show(args.tenant_id, job_id, sys.stderr)
            await asyncio.wait({worker}, timeout=REFRESH_SECONDS)
        worker.result()
    except asyncio.CancelledError:  # Ctrl+C: the job stops at its next page, checkpointed
        await catalog.cancel_job(args.tenant_id, job_id)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(worker)
        await _show(args.tenant_id, job_id, sys.stderr, final=True)
        raise
    job = await _show(args.tenant_id, job_id, sys.stderr, final=True)
    if job["state"] != "done":
        error = job["error"] or {}
        print(f"catalog {job['state']}: {error.get('message', '')}", file=sys.stderr)
        return 1
    return 0


async def _only_channel(services: Any, tenant_id: uuid.UUID) -> uuid.UUID | None:
    mine = [
        c.info.id
        for c in await active_channels(services, CHANNEL_TYPE)
        if c.info.tenant_id == tenant_id
    ]
    if len(mine) == 1:
        return mine[0]
    found = "no active ChatGuru channel" if not mine else f"{len(mine)} ChatGuru channels"
    print(f"error: the company has {found}; name one with --channel", file=sys.stderr)
    return None


async def _show(
    tenant_id: uuid.UUID, job_id: uuid.UUID, out: TextIO, *, final: bool = False
) -> dict[str, Any]:
    row = await catalog.job_row(tenant_id, job_id)
    assert row is not None
    job = catalog.job_view(row)
    line = progress_line(job)
    if out.isatty():
        out.write("\r\x1b[2K" + line + ("\n" if final else ""))
    elif final or job["state"] == "running":
        out.write(line + "\n")  # a log, not a bar: one line per refresh
    out.flush()
    return job


def progress_line(job: dict[str, Any]) -> str:
    """`[#####.....]  52%  chats 520/1000  messages 48,210  3,200 rows/s  ETA 0:42  running`"""
    total, done = job["chats_total"] or 0, job["chats_done"] or 0
    share = done / total if total else 0.0
    filled = int(share * BAR_WIDTH)
    eta = job["eta_seconds"]
    parts = [
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%}",
        f"chats {done:,}/{total:,}",
        f"messages {job['messages']:,}",
        f"{job['rows_per_second']:,.0f} rows/s",
    ]
    if eta is not None:
        minutes, seconds = divmod(int(eta), 60)
        parts.append(f"ETA {minutes}:{seconds:02d}")
    if job["errors"]:
        parts.append(f"errors {job['errors']:,}")
    parts.append(job["state"])
    return "  ".join(parts)


COMMANDS = [
    CommandSpec(
        name="catalog",
        help="catalog a ChatGuru account's whole history, with a progress bar (Ctrl+C cancels)",
        func=run,
        arguments=arguments,
    )
]
