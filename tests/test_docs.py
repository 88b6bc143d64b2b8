"""The docs are true to the parsers: every `fitbench …` command line in a code block of the README and docs/
parses with the real parser (placeholders included), and every `--flag` an inline `fitbench CMD …` names is an
option of that command. A renamed or removed flag fails here, not in a new user's terminal."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from fitbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def command_lines(text: str) -> list[str]:
    """`fitbench …` invocations in fenced code blocks: a `$ ` prompt dropped, continuation lines joined, cut
    at a comment, a pipe or a redirection; `a && fitbench …` counts too."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            for part in line.split(" && "):
                part = part.strip().removeprefix("$ ")
                if not part.startswith("fitbench ") or part.split()[1].endswith(":"):  # output, not a command
                    continue
                part = part.split(" #")[0]
                for stop in (" | ", " ; ", " > ", " 2>"):
                    part = part.split(stop)[0]
                found.append(part.strip())
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_line_in_the_docs_parses(doc, capsys):
    lines = command_lines((ROOT / doc).read_text())
    for line in lines:
        try:
            build_parser().parse_args(shlex.split(line)[1:])
        except SystemExit:
            pytest.fail(f"{doc}: `{line}` does not parse: {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("doc", DOCS)
def test_every_flag_named_beside_a_command_exists(doc):
    commands = build_parser()._subparsers._group_actions[0].choices
    wrong = []
    for span in re.findall(r"`(fitbench [^`\n]*)`", (ROOT / doc).read_text()):
        words = span.split()
        if len(words) < 2 or words[1] not in commands:
            continue
        known = commands[words[1]]._option_string_actions
        wrong += [f"`{span}`: {w}" for w in words[2:] if w.startswith("--") and w.split("=")[0] not in known]
    assert not wrong, wrong


def test_the_readme_opens_with_the_install_and_the_test_command():
    first_block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert "fitbench run" in first_block and "python -m pytest" in first_block
    assert command_lines(f"```\n{first_block}```") == ["fitbench run"]


def test_the_check_sees_the_docs_command_lines():
    total = sum(len(command_lines((ROOT / doc).read_text())) for doc in DOCS)
    assert total > 30, total  # the extraction finds them (a broken regex would pass every test above)
    assert command_lines("```bash\n$ fitbench run --nosuchflag 1  # a comment\n```") == ["fitbench run --nosuchflag 1"]
