import pytest

from optlaw import config
from optlaw.entry import cli
from optlaw.errors import ConfigError


def test_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "sweep", "status", "fit", "proxy", "demo"):
        assert name in out


def test_unknown_command(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_unknown_key_is_one_line_error():
    with pytest.raises(ConfigError, match="budget.nonsense") as info:
        config.compose("train", ["budget.nonsense=3"])
    assert "\n" not in str(info.value)


def test_unknown_group_option_names_choices():
    with pytest.raises(ConfigError, match="unknown model 'llama/999m'") as info:
        config.compose("train", ["model=llama/999m"])
    assert "llama/1m" in str(info.value)
