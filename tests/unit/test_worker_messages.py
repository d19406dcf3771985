"""The worker protocol's messages survive the trip and are never taken for one another."""

from __future__ import annotations

import pickle

import pytest

from jupysynth.engine import messages as m
from jupysynth.graph import NodeSpec
from jupysynth.renderer import States


def test_a_plain_block_reads_back_and_a_pickled_message_is_not_one():
    data = m.plain_block(128, 0xFFFFFFFF)
    assert m.read_plain_block(data) == (128, 0xFFFFFFFF)
    assert len(data) == 9  # a byte and two counts: no pickle on the common path
    block = m.Block(128, [(3, "freq", 440.0, True)], [], 7)
    assert m.read_plain_block(pickle.dumps(block)) is None


def share() -> m.Share:
    spec = NodeSpec(3, "Sine", "osc.sine", {"freq": 440.0, "amp": 0.1})
    return m.Share(
        m.Part({3: spec}, [(3, 0, 1)], [5]),
        m.Part({}, [], []),
        [(9, 0, 12)],
        m.Place(1, [0], [2]),
    )


@pytest.mark.parametrize(
    "msg",
    [
        m.Block(64, [(3, "freq", 220.0, False)], [(10, 3, "amp", 0.5)], 42, States()),
        m.Rebuild(share(), States(), {"Drone": b"blob"}, [3]),
        m.Build(share(), {}, []),
        m.Export([3, 4]),
        m.Quit(),
        m.Report({3: "Sine #3 turned NaN"}, True, {"Sine": (0.001, 4800)}),
    ],
)
def test_each_message_pickles_to_an_equal_one_of_its_class(msg):
    got = pickle.loads(pickle.dumps(msg, protocol=5))
    assert type(got) is type(msg)
    for name in msg.__dataclass_fields__:
        a, b = getattr(got, name), getattr(msg, name)
        if isinstance(a, States):
            assert a.ids() == b.ids()
        elif isinstance(a, m.Share):
            assert a.place == b.place and a.imports == b.imports
            assert a.body.nodes[3].values == b.body.nodes[3].values
        else:
            assert a == b, name
    with pytest.raises(AttributeError):
        msg.__setattr__(next(iter(msg.__dataclass_fields__), "x"), None)
