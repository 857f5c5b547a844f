"""The README's CLI section lists every command and flag the parsers have."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from entrypoints.cli import build_cli, main

README = Path(__file__).resolve().parents[2] / "README.md"


def cli_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## CLI\n")
    return text[start : text.index("\n## ", start + 1)]


def subcommands(
    command: click.Command, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], click.Command]:
    found = {path: command}
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found.update(subcommands(sub, (*path, name)))
    return found


def long_flags(command: click.Command) -> set[str]:
    return {
        option
        for param in command.params
        if isinstance(param, click.Option)
        for option in param.opts
        if option.startswith("--") and option != "--help"
    }


COMMANDS = subcommands(build_cli())


@pytest.mark.parametrize("path", [p for p in COMMANDS if p and p[0] not in ("relay", "consume")])
def test_every_command_and_flag_is_in_the_readme(path: tuple[str, ...]) -> None:
    section = cli_section()
    lines = [line for line in section.splitlines() if f"orderflow {' '.join(path)}" in line]
    assert lines, f"orderflow {' '.join(path)} is not in README's CLI section"
    if len(path) == 1 and subcommands(COMMANDS[path], path).keys() - {path}:
        return  # a group: its subcommands are checked one by one
    for flag in long_flags(COMMANDS[path]):
        assert any(flag in line for line in lines), f"{' '.join(path)} {flag}"


@pytest.mark.parametrize("process", ["relay", "consume"])
def test_every_flag_of_the_processes_is_in_the_readme(
    process: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([process, "--help"])
    flags = set(re.findall(r"(--[a-z][a-z-]*)", capsys.readouterr().out)) - {"--help"}
    assert "--topic-prefix" in flags
    section = cli_section()
    for flag in flags:
        assert flag in section, f"orderflow {process} {flag}"
    if process == "consume":
        assert "--group" in flags
