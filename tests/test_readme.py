"""The README followed literally: its commands name programs, subcommands, flags and files that
exist, and its Python snippet runs as shown."""

import contextlib
import importlib.util
import io
import re
import shlex

import pytest

from tests.helpers import ROOT
from wave_lightning.analysis.cli import build_parser as analyze_parser
from wave_lightning.cli import main as wave_lightning
from wave_lightning.sweep.cli import parser as sweep_parser

README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PATH = re.compile(r"(?<![\w/.])(?:conf|sweeps|scripts|benchmarks|docs)/[\w./-]*\w")
# programs installed by the set-up commands or by the user's own system, not by this repository
EXTERNAL = {"python3", "pip", "ruff", "sbatch", "docker", "tensorboard", "optuna"}
USER_WRITTEN = {"sweeps/copy_ablation_pg.yaml"}  # the README tells the user to write it
LIGHTNING = {"fit", "validate", "test", "predict"}


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


def commands() -> list[list[str]]:
    """Every command of the bash blocks as words: continuations joined, comments dropped,
    `a && b` split, leading VAR=value assignments and `.venv/bin/` removed."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                end = words.index("&&") if "&&" in words else len(words)
                command, words = words[:end], words[end + 1 :]
                while command and re.fullmatch(r"[A-Z_]+=\S*", command[0]):
                    command = command[1:]
                if command:
                    found.append([command[0].removeprefix(".venv/bin/"), *command[1:]])
    return found


def wave_lightning_args(command: list[str]) -> list[str] | None:
    """The `wave-lightning` arguments of a command: itself or `torchrun ... -m wave_lightning`."""
    if command[0] == "wave-lightning":
        return command[1:]
    if command[0] == "torchrun":
        return command[command.index("wave_lightning") + 1 :]
    return None


def test_the_readme_has_the_blocks_a_newcomer_follows():
    programs = [c[0] for c in commands()]
    assert programs.count("wave-lightning") >= 10 and "python3" in programs
    assert "source .venv/bin/activate" in README
    assert "--index-url https://download.pytorch.org/whl/cpu" in README
    assert len(blocks("python")) == 1


def test_every_program_exists():
    for command in commands():
        program = command[0]
        if program in ("python", "python3") and command[1] == "-m":
            assert importlib.util.find_spec(command[2]) is not None, command
        elif program in ("python", "python3"):
            assert (ROOT / command[1]).is_file(), command
        else:
            assert program in EXTERNAL | {"wave-lightning", "torchrun", "python", "python3"}


def test_every_file_the_readme_names_exists():
    named = set(PATH.findall(README))
    assert {"conf/experiment/copy_wrnn.yaml", "sweeps/copy_ablation_cpu.yaml"} <= named
    assert [path for path in sorted(named - USER_WRITTEN) if not (ROOT / path).exists()] == []
    assert "`sweeps/copy_ablation_pg.yaml`\n= `{extends: copy_ablation.yaml" in README


def test_the_sweep_block_runs_checks_and_reports_the_same_sweep():
    sweep = [c[2:] for c in commands() if c[:2] == ["wave-lightning", "sweep"]]
    one_machine = [c for c in sweep if c[0] in ("run", "status", "report", "dashboard")]
    assert {c[1] for c in one_machine} == {"sweeps/copy_ablation_cpu.yaml"}
    assert [c[0] for c in one_machine] == ["run", "status", "report", "dashboard"]


def test_sweep_and_analyze_commands_parse():
    for command in commands():
        args = wave_lightning_args(command)
        if args and args[0] == "sweep":
            sweep_parser().parse_args(args[1:])
        elif args and args[0] == "analyze":
            analyze_parser().parse_args(args[1:])


@pytest.mark.slow
def test_lightning_commands_parse_with_every_flag(capsys, monkeypatch):
    """Each fit command's configs and flags, parsed by the real CLI (`--print_config` exits)."""
    monkeypatch.chdir(ROOT)
    checked = 0
    for command in commands():
        args = wave_lightning_args(command)
        if not args or args[0] not in LIGHTNING:
            continue
        args = [a for a in args if a != "--print_config"]
        with pytest.raises(SystemExit) as exit_info:
            wave_lightning([*args, "--print_config"])
        assert exit_info.value.code in (0, None), (command, capsys.readouterr().err)
        assert "seed_everything:" in capsys.readouterr().out
        checked += 1
    assert checked >= 8


def test_the_python_snippet_runs_as_shown():
    (snippet,) = blocks("python")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "README.md", "exec"), {})
    shown = re.search(r"print\(.*\)  # (.*)", snippet).group(1)
    assert printed.getvalue().strip() == shown
