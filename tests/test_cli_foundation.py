"""The command group: instant help, one-line errors, the models table."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from llmapp.cli import COMMANDS, SUMMARIES, cli


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys; from llmapp.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in COMMANDS:
        assert name in out.stdout
    assert set(SUMMARIES) == set(COMMANDS)


def test_models_json_reports_installed_bundled_models():
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["smollm2-135m-instruct"]["installed"] and rows["smollm2-135m-instruct"]["path"].endswith(".gguf")
    assert rows["minilm-l6"]["context_window"] == 256


def test_user_errors_are_one_line_with_exit_code_2():
    code = ("import click\n"
            "from llmapp.cli import COMMANDS, main\n"
            "from llmapp.models import resolve\n"
            "x = click.Command('x', callback=lambda: resolve('no-such-model'))\n"
            "COMMANDS['x'] = '__main__:x'\n"
            "main(['x'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr and "unknown model 'no-such-model'; use one of:" in out.stderr
