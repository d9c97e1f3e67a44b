"""Finding the runs of a BIDS dataset: every ``sub-*/[ses-*/]anat/*_part-{mag,phase}_<suffix>``
series, grouped by folder and entities, per-echo files ordered by ``echo-N``, and what was
skipped and why."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import io

__all__ = ["SUFFIXES", "RunSpec", "discover"]

#: Image suffixes of multi-echo gradient-echo series.
SUFFIXES = ("MEGRE", "GRE", "T2starw")


@dataclass(frozen=True)
class RunSpec:
    """One acquisition of the dataset: its magnitude and phase files and where its outputs go."""

    prefix: str  # output prefix: the entities without echo/part, e.g. sub-01_ses-1_acq-x_run-1
    subdir: str  # sub-01/ses-1/anat
    magnitude: tuple[str, ...]
    phase: tuple[str, ...]
    suffix: str


def _split_name(path: Path) -> tuple[dict, str] | None:
    """Entities and suffix of a BIDS file name, or None when it does not look like one."""
    name = re.sub(r"\.nii(\.gz)?$", "", path.name)
    parts = name.split("_")
    if len(parts) < 2 or "-" in parts[-1]:
        return None
    ents = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if not sep or not key or not value:
            return None
        ents[key] = value
    return ents, parts[-1]


def _labels(values, kind: str) -> set[str] | None:
    """Participant/session labels given with or without their ``sub-``/``ses-`` prefix."""
    if not values:
        return None
    out = set()
    for v in values:
        for label in re.split(r"[\s,]+", str(v).strip()):
            if label:
                out.add(label[len(kind) + 1:] if label.startswith(kind + "-") else label)
    return out or None


def _echo_key(path: Path, ents: dict) -> int | None:
    echo = ents.get("echo")
    if echo is not None and echo.isdigit():
        return int(echo)
    num = io.read_sidecar(path).get("EchoNumber")
    return int(num) if isinstance(num, (int, float)) and not isinstance(num, bool) else None


def discover(bids_dir, participants=None, sessions=None) -> tuple[list[RunSpec], list[tuple[str, str]]]:
    """Every multi-echo GRE series of a BIDS dataset, and what was skipped with the reason.

    Parameters
    ----------
    bids_dir : path
        The dataset root (holding ``sub-*`` folders).
    participants, sessions : sequence of str, optional
        Labels to keep (``01`` or ``sub-01``; comma- or space-separated also accepted).

    Returns
    -------
    runs : list of RunSpec
        Sorted by prefix.
    skipped : list of (path or prefix, reason)
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise ValueError(f"BIDS folder {root} not found")
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise ValueError(f"no sub-* folders in {root}; is it a BIDS dataset root?")
    want_sub, want_ses = _labels(participants, "sub"), _labels(sessions, "ses")
    if want_sub:
        missing = sorted(want_sub - {p.name[4:] for p in subjects})
        if missing:
            raise ValueError(f"participant(s) {', '.join(missing)} not in {root} (found: "
                             f"{', '.join(p.name[4:] for p in subjects)})")
        subjects = [p for p in subjects if p.name[4:] in want_sub]
    groups: dict[tuple, dict] = {}
    skipped: list[tuple[str, str]] = []
    for sub in subjects:
        ses_dirs = sorted(p for p in sub.glob("ses-*") if p.is_dir())
        if want_ses:
            ses_dirs = [p for p in ses_dirs if p.name[4:] in want_ses]
        # the subject's own anat/ too when it also has sessions (a scan converted without a
        # session beside later ones): it was left out without a word; not with --session-label
        for anat in [d / "anat" for d in ses_dirs + ([] if want_ses else [sub])]:
            for path in sorted(anat.glob("*.nii*")):
                parsed = _split_name(path)
                if parsed is None or not re.search(r"\.nii(\.gz)?$", path.name):
                    continue
                ents, suffix = parsed
                if suffix not in SUFFIXES:
                    continue
                part = ents.get("part")
                if part not in ("mag", "phase"):
                    skipped.append((str(path), "no part-mag/part-phase entity"))
                    continue
                folder = {"sub": sub.name[4:], "ses": anat.parent.name[4:] if anat.parent != sub else None}
                wrong = [k for k in ("sub", "ses") if ents.get(k) != folder[k]]
                if wrong:
                    k = wrong[0]
                    skipped.append((str(path.relative_to(root)), f"its name says {k}-{ents.get(k)} but it lies in "
                                    f"{'the ' + k + '-' + folder[k] if folder[k] else 'no ' + k + '-'} folder"))
                    continue
                key = tuple((k, v) for k, v in ents.items() if k not in ("echo", "part"))
                g = groups.setdefault((str(anat), key, suffix), {"mag": [], "phase": [], "dir": anat})
                g[part].append((_echo_key(path, ents), path))
    runs, seen = [], {}
    for (_, key, suffix), g in sorted(groups.items()):
        prefix = "_".join(f"{k}-{v}" for k, v in key)
        rel = str(g["dir"].relative_to(root))
        if not g["mag"] or not g["phase"]:
            skipped.append((f"{rel}/{prefix}_{suffix}", f"no part-{'phase' if g['mag'] else 'mag'} files"))
            continue
        if len(g["mag"]) != len(g["phase"]):
            skipped.append((f"{rel}/{prefix}_{suffix}",
                            f"{len(g['mag'])} magnitude but {len(g['phase'])} phase files"))
            continue
        series = []
        for part in ("mag", "phase"):
            echoes = [e for e, _ in g[part]]
            if len(echoes) > 1 and (None in echoes or len(set(echoes)) != len(echoes)):
                series = None
                skipped.append((f"{rel}/{prefix}_{suffix}", f"{part} files without distinct echo-N entities"))
                break
            series.append(tuple(str(p) for _, p in sorted(g[part], key=lambda t: t[0] or 0)))
        if series is None:
            continue
        if (rel, prefix) in seen:
            skipped.append((f"{rel}/{prefix}_{suffix}", f"same entities as the {seen[rel, prefix]} series, whose "
                            "outputs would have the same names"))
            continue
        seen[rel, prefix] = suffix
        runs.append(RunSpec(prefix=prefix, subdir=rel, magnitude=series[0], phase=series[1], suffix=suffix))
    return runs, skipped


# The reasons (words of :func:`discover`) for a series that has both parts but whose files do
# not pair: an echo's file missing or misnamed, or two series under one name. Unlike a series
# without phase (a magnitude-only scan, skipped as such), the dataset is broken there, and a
# batch that ends with exit code 0 would hide a subject's missing maps.
BROKEN_SERIES = (" magnitude but ", "without distinct echo-N entities", "same entities as the")


def broken_series(skipped) -> list[tuple[str, str]]:
    """The entries of ``skipped`` (from :func:`discover`) that are broken series, not scans
    that are not QSM's (see ``BROKEN_SERIES``)."""
    return [(what, why) for what, why in skipped if any(words in why for words in BROKEN_SERIES)]


# ----------------------------------------------------------------------------- one run
