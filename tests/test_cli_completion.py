"""Shell completion: `_ACQKIT_COMPLETE=bash_source acqkit` prints a script bash accepts, and it completes commands."""
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from acqkit.cli import cli

pytestmark = pytest.mark.integration  # acqkit and bash in subprocesses


def acqkit(env: dict) -> subprocess.CompletedProcess:
    """`python -m acqkit` in a fresh process, as the shell would run it."""
    return subprocess.run([sys.executable, "-m", "acqkit"], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)


def test_bash_completion_script_is_produced_and_sources_cleanly():
    script = acqkit({"_ACQKIT_COMPLETE": "bash_source"})
    assert script.returncode == 0, script.stderr
    assert "_acqkit_completion()" in script.stdout
    assert "complete -o nosort -F _acqkit_completion acqkit" in script.stdout
    bash = shutil.which("bash")
    assert bash, "bash is needed to check that the completion script is valid"
    check = subprocess.run([bash, "-c", script.stdout + "\ncomplete -p acqkit"], capture_output=True, text=True)
    assert check.returncode == 0 and "_acqkit_completion" in check.stdout, check.stderr


@pytest.mark.parametrize("shell, marker", [("zsh_source", "#compdef acqkit"),
                                           ("fish_source", "function _acqkit_completion")])
def test_zsh_and_fish_scripts_are_produced(shell, marker):
    result = CliRunner().invoke(cli, [], prog_name="acqkit", env={"_ACQKIT_COMPLETE": shell})
    assert result.exit_code == 0 and marker in result.output, result.output


def test_completion_answers_commands_and_options():
    commands = acqkit({"_ACQKIT_COMPLETE": "bash_complete", "COMP_WORDS": "acqkit co", "COMP_CWORD": "1"})
    assert commands.stdout.split() == ["plain,compare"], commands.stdout + commands.stderr
    options = acqkit({"_ACQKIT_COMPLETE": "bash_complete", "COMP_WORDS": "acqkit compare --stra", "COMP_CWORD": "2"})
    assert "plain,--strategies" in options.stdout.split()


def test_help_tells_how_to_turn_completion_on():
    result = CliRunner().invoke(cli, ["--help"], prog_name="acqkit")
    assert 'eval "$(_ACQKIT_COMPLETE=bash_source acqkit)"' in result.output
    assert "docs/cli.md" in result.output
