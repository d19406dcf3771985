"""Processes seen through /proc, for the tests that check what the engine leaves behind."""

from __future__ import annotations

from pathlib import Path


def children_of(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, sorted."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)
