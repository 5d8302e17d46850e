"""The manual is true to this checkout: every shell block of README.md and docs/ carries a tag and the tagged ones
run (or plan, with `snakemake -n`) on the tiny config in a copy of the repository; every relative link resolves
and none leaves the repository; examples bound their image counts; the README types no results.

Tags, on the line before a fenced block: `<!-- run -->`, `<!-- dry-run -->` (each command is a `snakemake` one,
run with `-n`), `<!-- not-run: <reason> -->`, and for a non-shell block `<!-- file: <path> -->` (written into the
copy before the blocks run, e.g. the example defence that a `run` block trains).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, copy_of_repository

SHELLS = ("bash", "sh", "console", "shell")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
TAG = re.compile(r"^<!--\s*(?P<kind>run|dry-run|not-run|file)\s*(?::\s*(?P<arg>.*?))?\s*-->\s*$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\((?P<image>[^)\s]+)\)")
# The demo's and the Fashion-MNIST config run on the tiny config in the docs test (minutes, not hours).
TINY = ".test/config/config.yaml"
STAND_INS = {"config/demo.yaml": TINY, "config/fashion_mnist_cpu.yaml": TINY}


@dataclass(frozen=True)
class Block:
    page: str
    line: int          # 1-based line of the opening fence
    lang: str
    tag: str | None    # run, dry-run, not-run, file; None: untagged
    arg: str | None    # not-run's reason, file's path
    text: str


def pages(root: Path = REPO) -> list[Path]:
    """README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]


def blocks(text: str, page: str = "") -> list[Block]:
    """Every fenced block of a Markdown text with its language and the tag on the line before it."""
    lines, found, i = text.splitlines(), [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"{page}:{i + 1}: unclosed code block")
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        tag = TAG.match(before.strip())
        found.append(Block(page, i + 1, match["lang"], tag["kind"] if tag else None, tag["arg"] if tag else None,
                           "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return found


def tag_problems(found: list[Block]) -> list[str]:
    """A shell block without a tag, a not-run without its reason, a file tag on a shell block or without a path."""
    problems = []
    for b in found:
        where = f"{b.page}:{b.line}"
        if b.lang in SHELLS and b.tag not in ("run", "dry-run", "not-run"):
            problems.append(f"{where}: ```{b.lang} block without a run / dry-run / not-run tag")
        if b.tag == "not-run" and not b.arg:
            problems.append(f"{where}: not-run without a reason")
        if b.tag == "file" and (b.lang in SHELLS or not b.arg):
            problems.append(f"{where}: a file tag names a path and marks a non-shell block")
        if b.tag in ("run", "dry-run") and b.lang not in SHELLS:
            problems.append(f"{where}: {b.tag} on a ```{b.lang} block")
    return problems


def commands(text: str) -> list[str]:
    """A shell block's commands, continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def dry(command: str) -> str:
    """A snakemake command planned only: `-n` right after `snakemake` (after --resources it would be a value)."""
    if not command.startswith("snakemake "):
        raise AssertionError(f"a dry-run block holds only snakemake commands, got: {command}")
    return "snakemake -n " + command.removeprefix("snakemake ")


def on_tiny_config(command: str) -> str:
    for config, tiny in STAND_INS.items():
        command = command.replace(config, tiny)
    return command


def _strip_code(text: str) -> str:
    """The text outside fenced blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`]*`", "", text)  # a code span may run over a line break


def link_problems(page: Path, root: Path = REPO) -> list[str]:
    """Links that do not resolve to a file or folder of the repository, leave it, or point to the web."""
    text, problems = page.read_text(), []
    prose = _strip_code(text)
    for match in LINK.finditer(prose):
        target = match["target"] or match["image"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            problems.append(f"{page.name}: link outside the repository: {target}")
            continue
        path = target.split("#", 1)[0]
        if not path:
            continue  # an anchor on the same page
        resolved = (page.parent / path).resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{page.name}: link leaves the repository: {target}")
        elif not resolved.exists():
            problems.append(f"{page.name}: broken link: {target}")
    for url in re.findall(r"\b(?:https?|ftp)://[^\s)>]+", LINK.sub("", prose)):
        problems.append(f"{page.name}: web address outside code (write it as code text): {url}")
    return problems


# --- the checks on this checkout -------------------------------------------------------------------------------


def test_every_shell_block_is_tagged() -> None:
    found = [b for page in pages() for b in blocks(page.read_text(), page.relative_to(REPO).as_posix())]
    assert [b for b in found if b.lang in SHELLS], "no shell block found: the parser is broken"
    assert tag_problems(found) == []


def test_readme_test_command_is_not_run() -> None:
    """The README's test command runs this test: running it from here would recurse."""
    readme = blocks((REPO / "README.md").read_text(), "README.md")
    tests = [b for b in readme if any(c.startswith("pytest") for c in commands(b.text))]
    assert tests and all(b.tag == "not-run" for b in tests)


def test_every_link_resolves_inside_the_repository() -> None:
    checked = [*pages(), REPO / "CHANGELOG.md", REPO / "config" / "README.md"]
    assert [p for page in checked for p in link_problems(page)] == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    names = [p.relative_to(REPO).as_posix() for p in pages()[1:]]
    missing = [name for name in names if f"({name})" not in readme]
    assert missing == []


def test_examples_bound_their_image_counts() -> None:
    """A `pdd attack` / `pdd strong` example without --num-images attacks the whole test split (10,000 images on
    CIFAR-100); so does an API call without num_images / n_examples."""
    unbounded = []
    for page in pages():
        for b in blocks(page.read_text(), page.name):
            if b.lang in SHELLS:
                unbounded += [f"{b.page}:{b.line}: {c}" for c in commands(b.text)
                              if re.match(r"pdd (attack|strong)\b", c) and "--num-images" not in c]
            if b.lang == "python":
                for call in re.finditer(r"\b(evaluate|benchmark)\((.*?)\)\s*$", b.text, re.S | re.M):
                    if not re.search(r"\b(num_images|n_examples)=", call[2]):
                        unbounded.append(f"{b.page}:{b.line}: {call[1]}(...)")
    assert unbounded == []


def test_readme_types_no_results() -> None:
    """Numbers that a run prints come into the README only through the generated block: its prose outside the
    block types no percentages or decimal results (those drift between runs and machines)."""
    text = (REPO / "README.md").read_text()
    begin, end = "<!-- readme-tables: begin", "<!-- readme-tables: end -->"
    outside = text[:text.index(begin)] + text[text.index(end):]
    typed = re.findall(r"\b\d+(?:\.\d+)?\s?%|\b\d+\.\d+\b(?!\.x)", _strip_code(outside))
    assert typed == []
    assert len(text.splitlines()) <= 250


# --- the checks' own tests: each fails on what it must catch ---------------------------------------------------


def test_the_checks_catch_untagged_blocks_bad_links_and_unbounded_examples(tmp_path: Path) -> None:
    sample = ("Text\n\n```bash\necho untagged\n```\n\n<!-- not-run: -->\n```sh\nx\n```\n\n<!-- run -->\n"
              "```python\nprint(1)\n```\n\n<!-- file: a.py -->\n```python\nA = 1\n```\n\n<!-- dry-run -->\n"
              "```console\nsnakemake all \\\n    --cores 2\n```\n")
    found = blocks(sample, "sample.md")
    assert [(b.lang, b.tag, b.arg) for b in found] == [
        ("bash", None, None), ("sh", "not-run", ""), ("python", "run", None), ("python", "file", "a.py"),
        ("console", "dry-run", None)]
    assert len(tag_problems(found)) == 3  # untagged, no reason, run on python
    assert commands(found[-1].text) == ["snakemake all --cores 2"] and dry("snakemake all --cores 2") == \
        "snakemake -n all --cores 2"
    with pytest.raises(AssertionError, match="only snakemake"):
        dry("pip install x")

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("ok")
    page = tmp_path / "docs" / "b.md"
    page.write_text("[fine](a.md#x) [up](../docs/a.md) [same](#top) [gone](missing.md) [out](../../x.md) "
                    "[web](https://example.org) see http://example.org/y but `https://code.example` is code\n")
    problems = link_problems(page, tmp_path)
    assert len(problems) == 4 and all(any(w in p for p in problems) for w in ("missing.md", "../../x.md",
                                                                           "https://example.org", "http://example"))


# --- running the blocks ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_and_dry_run_blocks_succeed_on_the_tiny_config(tmp_path: Path) -> None:
    """Every `run` block runs and every `dry-run` block plans (`snakemake -n`) in a copy of the repository, with
    the tiny config standing in for the demo's and the Fashion-MNIST one; a failure names the page and line.
    About 3 minutes on a busy 2-core machine (load average 12), most of it the defence's one-epoch training and
    the cost estimate."""
    clone = copy_of_repository(tmp_path / "clone")
    found = [b for page in pages() for b in blocks(page.read_text(), page.relative_to(REPO).as_posix())]
    for b in found:
        if b.tag == "file":
            (clone / b.arg).parent.mkdir(parents=True, exist_ok=True)
            (clone / b.arg).write_text(b.text)
    env = {**os.environ, "PYTHONPATH": str(clone)}
    ran = []
    for b in found:
        if b.tag not in ("run", "dry-run"):
            continue
        for command in commands(b.text):
            command = on_tiny_config(dry(command) if b.tag == "dry-run" else command)
            if command in ran and command.startswith("snakemake -n"):
                continue  # the same plan again (several pages show it): planned once
            proc = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, (f"{b.page}:{b.line}: `{command}` exited {proc.returncode}:\n"
                                          f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            ran.append(command)
    assert any(c.startswith("pdd train") for c in ran) and any(c.startswith("snakemake -n") for c in ran)
