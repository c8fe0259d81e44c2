import pytest

from data.params import SpecError
from data.zoo.spec import parse_spec
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
    ("lr = 5e-2", "lr = -5e-2", "training.lr: -0.05 is out of range"),
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


# ----------------------------------------------------------------------------- hostile specs (issue 14)
DEEP = 5000  # far beyond the parser's recursion limit (~1000 frames) and MAX_NESTING


@pytest.mark.parametrize("old, new", [
    ("seeds = [0, 1]", "seeds = " + "[" * DEEP + "]" * DEEP),  # arrays: tomllib recursed until RecursionError
    ("seeds = [0, 1]", "seeds = " + "{a = " * DEEP + "1" + "}" * DEEP),  # inline tables
    ("seeds = [0, 1]", "seeds" + ".a" * DEEP + " = 1"),  # dotted keys: parsed, but repr() of it recursed
    ("[grid]", "[" + "a." * DEEP + "a]\nx = 1\n[grid]"),  # a table header of DEEP parts
])
def test_deeply_nested_spec_is_refused(old, new):
    with pytest.raises(SpecError, match=r"bad.toml: tables (or arrays )?nested more than 16 deep"):
        parse_spec(TINY_SPEC.replace(old, new, 1), "bad.toml")


def test_brackets_in_strings_and_comments_do_not_count_as_nesting():
    text = TINY_SPEC + ('[metrics.note]\nx = """ [[[[{{{{ \\""" ]""""\n'  # ends with a quote: 4 quotes in a row
                        + "# " + "[" * 100 + "\n" + "y = '" + "{" * 100 + "'\n")
    note = parse_spec(text).metric_params["note"]
    assert note == {"x": ' [[[[{{{{ """ ]"', "y": "{" * 100}


@pytest.mark.parametrize("old, new, message", [
    # 500 widths × 500 batch sizes × 400 seeds = 1e8 models from 6 kB of text: refused before building any
    ("width = [4, 16, 64]\nbatch_size = [16, 64]",
     f"width = {list(range(1, 501))}\nbatch_size = {list(range(1, 501))}", "exceed 10000 models"),
    ("seeds = [0, 1]", f"seeds = {list(range(2000))}", "seeds: 2000 entries, more than the 1024 allowed"),
    ("width = [4, 16, 64]", f"width = {list(range(1, 2001))}", "grid.width: 2000 values, more than the 1024"),
    ("checkpoint_epochs = [1]", f"checkpoint_epochs = {[1] * 2000}", "checkpoint_epochs: 2000 entries"),
    ("checkpoint_epochs = [1]", "checkpoint_epochs = 1", "'checkpoint_epochs' must be a list"),
    ('knob = "width"', "knob = [1]", "axes.load: needs knob"),
    ("seeds = [0, 1]", "seeds = [0, 1]\nmetrics = 3", "'metrics' must be a dict"),  # was AttributeError
    ("seeds = [0, 1]\n[task_params]\nn_train = 500\nlabel_noise = 0.1\n", 'seeds = [0, 1]\ntask_params = "x"\n',
     "'task_params' must be a dict"),
])
def test_oversized_or_mistyped_spec_is_refused(old, new, message):
    assert old in TINY_SPEC
    with pytest.raises(SpecError) as e:
        parse_spec(TINY_SPEC.replace(old, new, 1), "bad.toml")
    assert message in str(e.value) and "bad.toml" in str(e.value) and "\n" not in str(e.value)


def test_spec_seeds_alone_cannot_exceed_the_model_cap():
    text = TINY_SPEC.replace("seeds = [0, 1]", f"seeds = {list(range(1000))}").replace(
        "width = [4, 16, 64]", f"width = {list(range(1, 21))}")  # 1000 seeds × 20 × 2 = 40,000 models
    with pytest.raises(SpecError, match="exceed 10000 models"):
        parse_spec(text)


def test_spec_text_is_bounded():
    with pytest.raises(SpecError, match="characters, more than"):
        parse_spec(TINY_SPEC + "#" * (300 * 1024))


def test_load_spec_refuses_a_fifo_without_blocking(tmp_path):
    """`load_spec` on a FIFO used to block in read() until a writer came; it is refused at the stat."""
    import os
    import threading

    from data.zoo.spec import load_spec

    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    errors = []
    t = threading.Thread(target=lambda: errors.append(_raised(load_spec, fifo)), daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():  # unblock the reader (EOF), so the test run goes on, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(30)
        pytest.fail("load_spec blocked on a FIFO")
    assert isinstance(errors[0], SpecError) and "FIFO, not a regular file" in str(errors[0])


def _raised(fn, *args):
    try:
        fn(*args)
    except Exception as e:
        return e
    return None
