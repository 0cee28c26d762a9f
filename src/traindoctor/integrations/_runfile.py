"""The crash-safe run file: append-only JSONL, one whole line per write().

Each record is one `os.write` on a file opened with O_APPEND. A process killed with SIGKILL
loses nothing the kernel has already accepted, so after `kill -9` at most the line being written
is lost (and a torn line is skipped by the reader). No fsync per step: that would cost
milliseconds; the page cache survives the death of the process, only not of the machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..readers.traindoctor_run import FILE_NAME, META_NAME

__all__ = ["RunFile"]


class RunFile:
    def __init__(self, logdir, *, meta: dict | None = None):
        self.dir = Path(logdir).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / FILE_NAME
        self.replaced = self.path.exists()
        # A new run starts a new file: appending to an earlier run's file would join two runs' curves.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self.meta = dict(meta or {})
        if meta is not None:
            self.write_meta()

    def write_meta(self, **more) -> None:
        """The sidecar (hyper-parameters, how the run ended), replaced atomically."""
        self.meta.update(more)
        tmp = self.dir / (META_NAME + ".tmp")
        tmp.write_text(json.dumps(self.meta, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, self.dir / META_NAME)

    def write(self, record: dict) -> None:
        if self._fd is None:
            return
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
