"""`gateway sim pos|delo` exposes the simulators' faults, late commits included, as flags."""

from __future__ import annotations

import pytest

from adapters.delo.simulator import DeloSimulatorSettings
from adapters.pos.simulator import PosSimulatorSettings
from gateway import cli


@pytest.mark.parametrize("system", ["pos", "delo"])
def test_help_lists_the_fault_options(system: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["sim", system, "--help"])
    shown = capsys.readouterr().out
    for flag in ("--error-rate", "--lost-response-rate", "--late-commit-rate",
                 "--late-commit-s", "--seed"):
        assert flag in shown


@pytest.mark.parametrize("system", ["pos", "delo"])
def test_every_flag_names_a_simulator_setting(system: str) -> None:
    model = PosSimulatorSettings if system == "pos" else DeloSimulatorSettings
    for name, _, _ in cli._SIM_OPTIONS[system]:
        assert name in model.model_fields


def test_flags_reach_the_simulator_settings() -> None:
    args = cli._parser().parse_args(
        ["sim", "delo", "--late-commit-rate", "0.5", "--late-commit-s", "20", "--seed", "7"])
    settings = DeloSimulatorSettings(**cli._sim_overrides(args))
    assert (settings.late_commit_rate, settings.late_commit_s, settings.seed) == (0.5, 20.0, 7)
    assert settings.error_rate == 0.0  # flags not given keep the simulator's defaults


def test_an_impossible_rate_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sim", "pos", "--late-commit-rate", "2"]) == cli.EXIT_CONFIG
    assert "--late-commit-rate" in capsys.readouterr().err
