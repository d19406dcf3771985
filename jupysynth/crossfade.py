"""One crossfade for every renderer: which outputs fade which way, and the mix that fades them.

Re-running a cell replaces its patch: the outputs that leave fade out while
the ones that arrive fade in, linearly, so re-running an unchanged cell sounds
unchanged (an output in both patches stays at full level).  While it fades,
the renderer renders both patches together; once faded, it drops what only
the old one used.  :class:`~jupysynth.renderer.Renderer` (in one process) and
:class:`~jupysynth.engine.workers.PoolRenderer` (outputs on worker processes'
columns) both fade through this class; only what they drop afterwards differs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import kernels
from .graph import NodeSpec

__all__ = ["Crossfade", "fade_plan"]

Output = tuple[int, int, int]  # (module id, port, channels)

_MIX_OUT_FADE = kernels.load("bus.mix_out_fade")


def fade_plan(old: list[Output], new: list[Output]) -> tuple[list[Output], dict[Output, int]]:
    """The outputs heard during a crossfade and how each fades.

    Returns the old outputs that leave followed by the new ones, and a mode per
    output: 0 steady (in both), 1 fading out (leaving), 2 fading in (arriving).
    """
    merged = [o for o in old if o not in new] + list(new)
    modes = {o: (0 if o in old else 2) if o in new else 1 for o in merged}
    return merged, modes


class Crossfade:
    """A crossfade from the patch playing to ``nodes``/``outputs`` over ``length`` frames.

    Use :meth:`begin`: it gives the patch to render meanwhile (both together).
    """

    def __init__(
        self, nodes: dict[int, NodeSpec], outputs: list[Output], modes: dict, length: int
    ) -> None:
        self.nodes = nodes  # the patch faded to
        self.outputs = outputs
        self.modes = modes  # output -> 0 steady, 1 out, 2 in
        self.length = int(length)
        self.done = 0  # frames faded so far

    @classmethod
    def begin(
        cls,
        nodes_now: dict[int, NodeSpec],
        outputs_now: list[Output],
        nodes: dict[int, NodeSpec],
        outputs: list[Output],
        fade: int,
    ) -> tuple[Crossfade | None, dict[int, NodeSpec], list[Output]]:
        """``(crossfade, nodes, outputs)`` to render from the patch playing to the new one.

        With no fade (or nothing playing) the crossfade is None and the patch the new one.
        """
        if fade <= 0 or not outputs_now:
            return None, dict(nodes), list(outputs)
        merged, modes = fade_plan(outputs_now, outputs)
        return cls(dict(nodes), list(outputs), modes, fade), {**nodes_now, **nodes}, merged

    def lanes(self, outputs: list[Output]) -> tuple[np.ndarray, np.ndarray]:
        """The mode of each left and right lane a renderer mixes: ``outputs`` in its
        mixing order, a mono output on both sides, a stereo one's port 0 left, the
        other right."""
        modes = self.modes
        left = [modes[o] for o in outputs if o[2] == 1 or o[1] == 0]
        right = [modes[o] for o in outputs if o[2] == 1 or o[1] != 0]
        return np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)

    def mix(
        self,
        a: int,
        b: int,
        bus: np.ndarray,
        left: Any,
        right: Any,
        lanes: tuple[np.ndarray, np.ndarray],
        out: np.ndarray,
    ) -> bool:
        """Mix frames ``a..b`` of the lanes into ``out``, faded; True once it has faded."""
        lmode, rmode = lanes
        _MIX_OUT_FADE(a, b, bus, left, right, lmode, rmode, self.done, self.length, out)
        self.done += b - a
        return self.done >= self.length
