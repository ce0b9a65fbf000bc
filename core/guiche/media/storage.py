"""Where media bytes live: `<media_root>/<tenant_id>/<uuid hex>`, never a caller's path.

Keys are generated here from ids, and every path is checked to stay under the root, so
neither a filename nor a stored key can reach outside a tenant's folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO


class StorageError(Exception):
    """A key that does not resolve inside the media root."""


class MediaStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    @staticmethod
    def key_for(tenant_id: uuid.UUID, file_id: uuid.UUID) -> str:
        return f"{tenant_id}/{file_id.hex}"

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise StorageError(f"media key {key!r} escapes the media root")
        return path

    async def read(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path(key).read_bytes)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, True)

    def writer(self, key: str) -> MediaWriter:
        return MediaWriter(self.path(key))


class MediaWriter:
    """Streams bytes to a temporary file beside the target, hashing as it goes.

    `commit()` renames it into place (atomic on one filesystem); `abort()` removes it, so
    a refused or broken upload never leaves a partial file under a real key.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.temp = target.with_name(f".{target.name}.part")
        self.size = 0
        self._sha = hashlib.sha256()
        self._file: BinaryIO | None = None

    async def write(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = await asyncio.to_thread(self._open)
        self._sha.update(chunk)
        self.size += len(chunk)
        await asyncio.to_thread(self._file.write, chunk)

    def _open(self) -> BinaryIO:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        return open(self.temp, "wb")  # closed by commit() or abort()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    async def commit(self) -> None:
        if self._file is None:
            self._file = await asyncio.to_thread(self._open)
        await asyncio.to_thread(self._file.close)
        await asyncio.to_thread(os.replace, self.temp, self.target)

    async def abort(self) -> None:
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
        await asyncio.to_thread(self.temp.unlink, True)
