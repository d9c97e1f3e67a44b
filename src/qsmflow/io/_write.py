"""Atomic writing of NIfTI, JSON and text outputs."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np


class OutputSet:
    """Stage output files under temporary names and rename them all on success.

    Use as a context manager::

        with OutputSet(out_dir, force=False) as out:
            out.check(["a.nii.gz", "b.json"])      # refuse existing outputs up front
            out.nifti("a.nii.gz", data, affine)
            out.json("b.json", {...})

    On leaving the block without an exception every staged file is renamed to its
    final name (``os.replace``, atomic on one file system) and the files named by
    :meth:`remove` are deleted; on an exception the staged files are removed and
    nothing appears or goes. An output folder created here is
    removed again if it ends up empty.
    """

    def __init__(self, out_dir, *, force: bool = False):
        self.out_dir = Path(out_dir)
        self.force = force
        self._staged: list[tuple[Path, Path]] = []
        self._pending: list = []  # NIfTI files being compressed in the background
        self._pool = None
        self._created: list[Path] = []
        self._obsolete: list[Path] = []
        self._tag = uuid.uuid4().hex[:8]

    def __enter__(self) -> "OutputSet":
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"output {self.out_dir} exists and is not a folder")
        return self

    def check(self, names: Sequence[str]) -> None:
        """Refuse, before any work, an output folder that cannot be written, and outputs that
        already exist unless ``force``."""
        self._probe()
        if self.force:
            return
        existing = [n for n in names if (self.out_dir / n).exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise ValueError(f"output {self.out_dir / existing[0]} exists{more}; pass --force to overwrite (force=True in Python)")

    def remove(self, names: Sequence[str]) -> None:
        """With ``force``, delete these files on success: a rerun's outputs must not sit next to
        maps an earlier run made and this one did not. Without ``force`` nothing is deleted."""
        if self.force:
            self._obsolete += [self.out_dir / n for n in names]

    def _probe(self) -> None:
        """Create the folder (and remove it again) or write a file in it: a folder that cannot
        be made or written is refused now, not after the work."""
        made = []
        try:
            p = self.out_dir
            while not p.exists():
                made.append(p)
                p = p.parent
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / f".qsmflow-write-test-{self._tag}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ValueError(f"cannot write the output folder {self.out_dir} (-o/--out): {exc.strerror or exc}; "
                             "choose a folder you can write to") from None
        finally:
            for d in made:
                try:
                    d.rmdir()
                except OSError:
                    pass

    def _target(self, name: str) -> tuple[Path, Path]:
        final = self.out_dir / name
        self.check([name])
        parent = final.parent
        if not parent.exists():
            missing = []
            p = parent
            while not p.exists():
                missing.append(p)
                p = p.parent
            parent.mkdir(parents=True, exist_ok=True)
            self._created.extend(reversed(missing))
        suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".nii.gz") else final.suffix
        stem = final.name[: len(final.name) - len(suffix)] if suffix else final.name
        tmp = final.with_name(f".{stem}.tmp-{self._tag}{suffix}")
        self._staged.append((tmp, final))
        return tmp, final

    def nifti(self, name: str, data: np.ndarray, affine: np.ndarray, *, dtype=np.float32, description: str | None = None) -> Path:
        """Stage ``data`` as a NIfTI file (float32 by default, masks as uint8)."""
        tmp, final = self._target(name)
        arr = np.asarray(data)
        arr = arr.astype(np.uint8 if arr.dtype == bool else dtype)
        img = nib.Nifti1Image(arr, np.asarray(affine, float))
        img.header.set_xyzt_units("mm", "sec")
        img.set_qform(np.asarray(affine, float), code=1)
        img.set_sform(np.asarray(affine, float), code=1)
        if description:
            img.header["descrip"] = description.encode("ascii", "replace")[:79]
        # gzip releases the GIL: maps are compressed side by side in threads, and the block
        # waits for them all before anything is renamed (an error discards every file)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
        self._pending.append(self._pool.submit(nib.save, img, str(tmp)))
        return final

    def copy(self, name: str, source) -> Path:
        """Stage a copy of the file ``source`` (gzipped on the way when ``name`` ends in .gz
        and ``source`` does not)."""
        tmp, final = self._target(name)
        if name.endswith(".gz") and not str(source).endswith(".gz"):
            with open(source, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copyfile(source, tmp)
        return final

    def file(self, name: str, writer) -> Path:
        """Stage a file written by ``writer(path)`` (for formats written by other libraries)."""
        tmp, final = self._target(name)
        writer(tmp)
        return final

    def json(self, name: str, obj) -> Path:
        """Stage ``obj`` as a strict JSON file (RFC 8259): NaN and ±Inf, which strict parsers
        such as the BIDS validator refuse, are written as null (unknown)."""
        tmp, final = self._target(name)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(strict_json(obj))
        return final

    def text(self, name: str, text: str) -> Path:
        """Stage a text file."""
        tmp, final = self._target(name)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        return final

    def _discard(self) -> None:
        for tmp, _ in self._staged:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        for d in reversed(self._created):
            try:
                d.rmdir()
            except OSError:
                pass
        self._staged.clear()

    def _wait(self) -> BaseException | None:
        """Wait for every background write; the first error, if any."""
        error = None
        for future in self._pending:
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001  (re-raised by the caller)
                error = error or exc
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        return error

    def __exit__(self, exc_type, exc, tb) -> bool:
        error = self._wait()
        if exc_type is not None:
            self._discard()
            return False
        if error is not None:
            self._discard()
            raise error
        try:
            for tmp, final in self._staged:
                os.replace(tmp, final)
        except BaseException:
            self._discard()
            raise
        finals = {final for _, final in self._staged}
        for path in self._obsolete:
            if path not in finals:
                path.unlink(missing_ok=True)
        self._staged.clear()
        self._obsolete.clear()
        return False


def strict_json(obj) -> str:
    """``obj`` as indented, strict JSON text: NaN and ±Inf become null; numpy values and
    paths become plain JSON."""
    return json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False) + "\n"


def _finite(obj):
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
