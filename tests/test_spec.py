import pytest

from data.params import SpecError
from data.spec import parse_spec
from tests.conftest import TINY_SPEC


def test_tiny_spec_parses_and_expands():
    spec = parse_spec(TINY_SPEC)
    models = spec.models()
    assert spec.n_models == len(models) == 12
    assert len({m.model_id for m in models}) == 12
    assert models[0].model_id == "width04-batch_size16-s0"
    # knobs land in their sections; checkpoint epochs always include 0, the analysis epochs and the last
    m = models[-1]
    assert m.get("arch_params")["width"] == 64 and m.get("training")["batch_size"] == 64
    assert spec.checkpoint_epochs == (0, 1, 2, 3)
    assert spec.load.knob == "width" and spec.temperature.knob == "batch_size"


@pytest.mark.parametrize("old, new, message", [
    ('arch = "mlp"', 'arch = "resnet9000"', "unknown architecture 'resnet9000'"),
    ('task = "mnist1d"', 'task = "imagenet21k"', "unknown task 'imagenet21k'"),
    ("width = [4, 16, 64]", "width = [4, -16, 64]", "arch_params.width: -16 is out of range"),
    ("width = [4, 16, 64]", "", "arch_params.width: missing (required int)"),
    ('task = "mnist1d"\n', "", "missing field 'task'"),
    ("lr = 0.05", "lr = -0.05", "training.lr: -0.05 is out of range"),
    ("label_noise = 0.1", "label_noise = 1.5", "label_noise: 1.5 is out of range"),
    ("seeds = [0, 1]", "seeds = [0, 0]", "seeds: must be distinct"),
    ("batch_size = [16, 64]", "batch_size = [16, 64]\nfoo = [1, 2]", "grid.foo: not a parameter"),
    ("analysis_epochs = [2]", "analysis_epochs = [20]", "outside [0, 3]"),
    ('knob = "batch_size"', 'knob = "lr"', "axes.temperature.knob: 'lr' is not a grid knob"),
    ("increases = false", "increases = 3", "axes.load: needs knob"),
    ("[grid]", "[grid\n", "not valid TOML"),
    ("[grid]", "[grid]\nlr = [0.1, 0.1000000000000000001]", "distinct"),
])
def test_bad_specs_name_the_problem(old, new, message):
    assert old in TINY_SPEC
    with pytest.raises(SpecError) as e:
        parse_spec(TINY_SPEC.replace(old, new, 1), "bad.toml")
    assert message in str(e.value) and "bad.toml" in str(e.value)
