"""The one error wrapper of the CLI and the stages: bad input is one line and exit 2; a SIGTERM stop is exit 143."""

import pytest

from ldp.config import ConfigError
from ldp.errors import BAD_INPUT, TERMINATED, run_guarded


def _raise(exc):
    def fn():
        raise exc
    return fn


@pytest.mark.parametrize("exc", [ConfigError("p.yaml:train.iters: must be > 0"), KeyError("p.yaml:x: no such"),
                                 FileNotFoundError("a.png: not found"), RuntimeError("download: stalled")])
def test_known_errors_are_one_line_and_exit_2(exc, capsys):
    assert run_guarded(_raise(exc), "ldp train") == BAD_INPUT == 2
    err = capsys.readouterr().err
    assert err.startswith("ldp train: error: ") and err.count("\n") == 1 and "'" not in err.split("error: ")[1][:1]


def test_a_terminated_training_exits_143_with_its_message(capsys):
    from ldp.train import TrainingTerminated

    assert run_guarded(_raise(TrainingTerminated("SIGTERM: stopped at iteration 3 of 8")), "ldp train") == 143
    assert TERMINATED == 143 and "stopped: SIGTERM: stopped at iteration 3" in capsys.readouterr().err


def test_ctrl_c_and_bugs_are_not_swallowed():
    with pytest.raises(KeyboardInterrupt):
        run_guarded(_raise(KeyboardInterrupt()), "ldp train")
    with pytest.raises(TypeError):
        run_guarded(_raise(TypeError("a bug keeps its traceback")), "ldp train")
    assert run_guarded(lambda: None, "ldp train") == 0
