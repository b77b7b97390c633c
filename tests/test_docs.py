"""The user documentation against the code: what the docs tell a user to type or click exists.

README.md and docs/*.md quote widget controls, `ribseg` options, benchmark and script options and
links to files; each of these checks failed on the docs before the audit of 2026-12-05 (widget
labels that were renamed, benchmark options that were removed) or guards the same class of error.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WIDGETS = ROOT / "src" / "napari_ribseg" / "_widgets"
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")

#: Emphasised words in the widget docs that are not this widget's controls: napari's own UI,
#: a step title, a bold lead-in of a paragraph.
NOT_CONTROLS = {
    "Use it",
    "Plugins",
    "activity",
    "Ctrl-Z",
    "Duplicate Layer",
    "n edit dim",
    "Loading a stack makes it the one on screen",
    "The default model",
}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _ui_strings() -> str:
    """Every string literal of the widget code (f-string pieces included), docstrings left out,
    and the manifest: the texts a user can see."""
    found: list[str] = []
    for path in sorted(WIDGETS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body
                if (
                    body
                    and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                ):
                    docstrings.add(id(body[0].value))
        found += [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ]
    found.append((ROOT / "src" / "napari_ribseg" / "napari.yaml").read_text(encoding="utf-8"))
    return "\n".join(found)


def _emphasised(text: str) -> list[str]:
    return [
        m.group(2).strip() for m in re.finditer(r"(?<![*\w])(\*\*?)([^*`\n]+?)\1(?![*\w])", text)
    ]


def test_widget_controls_named_in_docs_exist():
    """Every *control* or **control** of docs/widget.md and README's five steps is a text of the
    widget ("Sample: linear probe", "Run on:", "Re-segment N unreviewed frames", ...)."""
    ui = _ui_strings()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    steps = readme.split("## What a user does", 1)[1].split("\n## ", 1)[0]
    texts = {"README.md (What a user does)": steps}
    texts["docs/widget.md"] = (ROOT / "docs" / "widget.md").read_text(encoding="utf-8")
    missing = []
    for where, text in texts.items():
        for phrase in _emphasised(text):
            if phrase.endswith(".") or phrase in NOT_CONTROLS:
                continue  # a paragraph's lead-in, or not ours
            # "Segment → Image", "Sample: linear probe / convex probe", "Re-segment N ... frames"
            for part in re.split(r" → | / |: ", phrase):
                if part in NOT_CONTROLS:
                    continue
                if not all(piece.strip() in ui for piece in part.split(" N ")):
                    missing.append(f"{where}: *{phrase}* ({part!r} is no widget text)")
    assert not missing, "\n".join(missing)


def _subcommand_options() -> dict[str, set[str]]:
    from napari_ribseg.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name: {o for action in p._actions for o in action.option_strings}
        for name, p in sub.choices.items()
    }


def test_ribseg_options_in_docs_exist():
    """`ribseg CMD ... --flag` anywhere in the docs names a subcommand and an option it has."""
    options = _subcommand_options()
    wrong = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for m in re.finditer(r"ribseg ([a-z][a-z-]*(?:[|/][a-z-]+)*)([^`#;\n]*)", line):
                commands = re.split(r"[|/]", m.group(1))
                known = [c for c in commands if c in options]
                if not known:
                    continue  # prose: "ribseg is a Qt-free library"
                if len(known) < len(commands):
                    wrong.append(f"{_rel(doc)}:{number}: no command in {m.group(1)!r}")
                for flag in FLAG.findall(m.group(2)):
                    wrong += [
                        f"{_rel(doc)}:{number}: ribseg {c} has no {flag}"
                        for c in known
                        if flag not in options[c]
                    ]
    assert not wrong, "\n".join(wrong)


def _script_text(path: Path) -> str:
    """A script's text and that of the benchmarks it imports its options from."""
    text = path.read_text(encoding="utf-8")
    for name in re.findall(r"^from (bench_\w+) import", text, re.M):
        sibling = path.parent / f"{name}.py"
        if sibling.exists():
            text += sibling.read_text(encoding="utf-8")
    return text


def _commands(doc: Path):
    """(line number, command) of every `python benchmarks/...` or `scripts/...` command, with its
    continuation lines; commands in a code block that first checks out older code are skipped."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    older_code = False
    for index, line in enumerate(lines):
        if line.startswith("```"):
            older_code = False
        if re.search(r"git (worktree add|checkout) ", line):
            older_code = True
        if older_code:
            continue
        for m in re.finditer(
            r"(?:benchmarks|scripts)/([\w-]+\.py)|cd benchmarks && python ([\w-]+\.py)", line
        ):
            name = m.group(1) or m.group(2)
            rest = line[m.end() :]
            follow = index + 1
            while rest.rstrip().endswith("\\") and follow < len(lines):
                rest += " " + lines[follow]
                follow += 1
            yield index + 1, name, re.split(r"`|#|;|&&", rest)[0]


def test_script_options_in_docs_exist():
    """`python benchmarks/bench_x.py --flag` (and scripts/) in the docs: the script exists and
    declares the option, so a quoted measurement can be re-run as written."""
    wrong = []
    for doc in DOCS:
        for number, name, rest in _commands(doc):
            path = next(
                (p for p in (ROOT / "benchmarks" / name, ROOT / "scripts" / name) if p.exists()),
                None,
            )
            if path is None:
                wrong.append(f"{_rel(doc)}:{number}: no benchmarks/ or scripts/ {name}")
                continue
            text = _script_text(path)
            wrong += [
                f"{_rel(doc)}:{number}: {_rel(path)} has no {flag}"
                for flag in FLAG.findall(rest)
                if f'"{flag}"' not in text and f"'{flag}'" not in text
            ]
    assert not wrong, "\n".join(wrong)


def _slug(heading: str) -> str:
    heading = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return heading.replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: _rel(p))
def test_relative_links_resolve(doc: Path):
    """[text](path#anchor) links to files of the repository and to headings exist."""
    wrong = []
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        for m in re.finditer(r"\]\(([^)\s#]*)(?:#([^)\s]+))?\)", line):
            target, anchor = m.group(1), m.group(2)
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path = (doc.parent / target) if target else doc
            if not path.exists():
                wrong.append(f"{_rel(doc)}:{number}: {target} does not exist")
            elif anchor and path.suffix == ".md":
                headings = re.findall(r"^#+\s+(.*)$", path.read_text(encoding="utf-8"), re.M)
                if anchor not in {_slug(h) for h in headings}:
                    wrong.append(f"{_rel(doc)}:{number}: {target}#{anchor}: no such heading")
    assert not wrong, "\n".join(wrong)


def test_ribseg_synopsis_defaults_match_the_parser():
    """A synopsis' `[--flag VALUE]` (docs/training.md, docs/inference.md) shows the default: the
    parser's default must be that value (`[--steps 240]`, `[--lr 5e-4]`, `[--threshold 0.5]`)."""
    from napari_ribseg.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = {
        name: {o: a for a in p._actions for o in a.option_strings}
        for name, p in sub.choices.items()
    }
    wrong, compared = [], 0
    for doc in DOCS:
        lines: list[tuple[int, str]] = []
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if lines and re.match(r"\s+\[", line) and "ribseg " in lines[-1][1]:
                lines[-1] = (lines[-1][0], f"{lines[-1][1]} {line.strip()}")  # a continuation
            else:
                lines.append((number, line))
        for number, line in lines:
            for m in re.finditer(r"ribseg ([a-z-]+)([^`#\n]*)", line):
                for flag, shown in re.findall(r"\[(--[a-z-]+) ([^\]\s|]+)\]", m.group(2)):
                    action = actions.get(m.group(1), {}).get(flag)
                    if action is None or shown[0].isupper():
                        continue  # a placeholder (NAME, DIR) or no such option (another test)
                    kind = action.type or type(action.default)
                    compared += 1
                    if kind(shown) != action.default:
                        wrong.append(
                            f"{_rel(doc)}:{number}: ribseg {m.group(1)} {flag} {shown}: "
                            f"the default is {action.default!r}"
                        )
    assert compared >= 20, f"only {compared} synopsis defaults found: the pattern broke"
    assert not wrong, "\n".join(wrong)
