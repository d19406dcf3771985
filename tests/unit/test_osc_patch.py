"""The engine's patch table: what /module/new, /param/connect, /out/add... do and refuse."""

from __future__ import annotations

import json

import pytest

from jupysynth.engine.patch import PatchTable
from jupysynth.errors import ParamError, PatchError
from jupysynth.graph import snapshot
from jupysynth.modules import LFO, LowPass, Noise, Pan, Saw


def spec(**values) -> str:
    return json.dumps({"values": values})


@pytest.fixture
def table() -> PatchTable:
    t = PatchTable()
    t.new(1, "Saw", spec(freq=110, amp=0.3))
    t.new(2, "LowPass", json.dumps({"values": {"input": [1, 0], "cutoff": 900}}))
    return t


def test_new_builds_the_same_nodespec_as_a_snapshot_of_the_python_patch(table):
    saw = Saw(freq=110, amp=0.3)
    lp = LowPass(saw, cutoff=900)
    nodes, _ = snapshot(lp)
    mine = {saw.id: table.nodes[1], lp.id: table.nodes[2]}
    for i, ref in nodes.items():
        got = mine[i]
        assert (got.type, got.kernel, got.options, got.inputs) == (
            ref.type,
            ref.kernel,
            ref.options,
            ref.inputs,
        )
        remap = {saw.id: 1, lp.id: 2}
        expected = {
            k: (remap[v[0]], v[1]) if isinstance(v, tuple) else v for k, v in ref.values.items()
        }
        assert got.values == expected


def test_options_choose_the_kernel_and_are_checked():
    t = PatchTable()
    t.new(5, "Noise", json.dumps({"options": {"color": "pink", "seed": 3}}))
    assert t.nodes[5].kernel == Noise(color="pink").kernel_name()
    assert t.nodes[5].options == {"color": "pink", "seed": 3}
    with pytest.raises(ParamError, match="choose one of"):
        t.new(6, "LFO", json.dumps({"options": {"shape": "wobble"}}))
    assert 6 not in t.nodes
    t.new(7, "LFO", json.dumps({"options": {"shape": "square"}, "values": {"freq": 2}}))
    assert t.nodes[7].options["shape"] == LFO(shape="square").option("shape")


@pytest.mark.parametrize(
    "args, error, fragment",
    [
        ((3, "Sawtooth", ""), PatchError, "unknown module type 'Sawtooth'; valid: "),
        ((1, "Sine", ""), PatchError, "module #1 already exists"),
        ((0, "Sine", ""), PatchError, "integer from 1 to"),
        ((3, "Sine", "{"), ParamError, "not valid JSON"),
        ((3, "Sine", "[1, 2]"), ParamError, "must be a JSON object"),
        ((3, "Sine", '{"colour": 1}'), ParamError, "keys among values, options"),
        ((3, "Sine", spec(frq=440)), ParamError, "unknown parameter 'frq' for Sine"),
        ((3, "Sine", spec(freq=1e30)), ParamError, "out of range"),
        ((3, "Sine", '{"values": {"freq": NaN}}'), ParamError, "finite"),
        ((3, "Sine", spec(freq="loud")), ParamError, "takes a number or a module"),
        ((3, "Sine", spec(freq=[99, 0])), PatchError, "module #99, which does not exist"),
        ((3, "Sine", spec(freq=[2, 1])), PatchError, "has 1 output(s)"),
        ((3, "Sine", spec(freq=[2])), PatchError, "[source_id, port] pair"),
        ((3, "Delay", spec(time=-1.0)), ParamError, "out of range"),
        ((3, "ADSR", spec(attack=-0.5)), ParamError, "out of range"),
        (
            (3, "Delay", json.dumps({"values": {"time": 2.0}, "options": {"max_time": 1.0}})),
            ParamError,
            "longer than max_time",
        ),
        ((3, "Sine", '{"inputs": [[1, 0]]}'), ParamError, "only Mix"),
    ],
)
def test_new_refuses_bad_specs_and_leaves_the_table_unchanged(table, args, error, fragment):
    before = dict(table.nodes)
    with pytest.raises(error) as err:
        table.new(*args)
    assert fragment in str(err.value)
    assert table.nodes == before


def test_connect_checks_parameter_source_and_loops(table):
    table.new(3, "Sine", spec(freq=2))
    table.connect(2, "cutoff", 3, 0)
    assert table.nodes[2].values["cutoff"] == (3, 0)
    with pytest.raises(ParamError, match="unknown parameter 'cutof'"):
        table.connect(2, "cutof", 3, 0)
    with pytest.raises(PatchError, match="no module #42"):
        table.connect(42, "freq", 3, 0)
    with pytest.raises(PatchError, match="would close a loop"):
        table.connect(1, "freq", 2, 0)
    assert table.nodes[1].values["freq"] == 110.0  # unchanged after the refusal
    table.new(4, "Feedback", "")
    table.connect(4, "input", 2, 0)
    table.connect(1, "freq", 4, 0)  # a loop through a Feedback is fine


def test_set_turns_a_signal_back_into_a_number(table):
    assert table.set(2, "input", 0.0) is True  # it was a signal: rebuild
    assert table.set(2, "cutoff", 1200) is False
    assert table.nodes[2].values["cutoff"] == 1200.0
    with pytest.raises(ParamError, match="out of range"):
        table.set(2, "cutoff", -5)


def test_outputs_follow_snapshot_conventions():
    t = PatchTable()
    t.new(1, "Saw", "")
    t.new(2, "Pan", json.dumps({"values": {"input": [1, 0]}}))
    t.out_add(2)
    t.out_add(2)  # again: no change
    saw = Saw()
    pan = Pan(saw)
    _, outputs = snapshot(pan)
    assert [(o[1], o[2]) for o in t.outputs] == [(o[1], o[2]) for o in outputs]
    assert t.outputs == [(2, 0, 2), (2, 1, 2)]
    with pytest.raises(PatchError, match="port 2 does not exist"):
        t.out_add(2, 2)
    t.out_remove(2)
    assert t.outputs == []
    with pytest.raises(PatchError, match="not in the output"):
        t.out_remove(2)


def test_free_refuses_a_module_still_read_and_leaves_the_output(table):
    table.out_add(2)
    with pytest.raises(PatchError, match=r"still read by LowPass#2\.input"):
        table.free(1)
    table.free(2)
    assert table.outputs == [] and 2 not in table.nodes
    table.free(1)
    assert table.nodes == {}


def test_mix_inputs_only_for_a_mix(table):
    table.new(3, "Mix", json.dumps({"inputs": [[1, 0]]}))
    table.mix_inputs(3, [(1, 0), (2, 0)])
    assert table.nodes[3].inputs == [(1, 0), (2, 0)]
    with pytest.raises(PatchError, match="not a Mix"):
        table.mix_inputs(2, [(1, 0)])
    with pytest.raises(PatchError, match="does not exist"):
        table.mix_inputs(3, [(77, 0)])
