"""Code fingerprints: each rule's hash covers exactly the package modules its command imports."""

from __future__ import annotations

import pytest

from pdd import fingerprint as fp


def test_closure_follows_imports_and_leaves_out_the_cli_and_version() -> None:
    training = fp.closure(("pdd.training",))
    assert {"pdd.training", "pdd.losses", "pdd.models", "pdd.dropout", "pdd.data", "pdd.methods",
            "pdd.methods.deg", "pdd.methods.dverge"} <= set(training)
    assert "pdd.cli" not in training and "pdd" not in training and "pdd.reports.tables" not in training
    tables = fp.closure(("pdd.reports.tables",))
    assert "pdd.reports.tables" in tables and "pdd.losses" not in tables and "pdd.training" not in tables


def test_fingerprint_changes_with_the_code_it_covers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {e: fp.fingerprint(e) for e in ("pdd.training", "pdd.reports.tables", "pdd.evaluation.attacks")}
    read = fp.source
    monkeypatch.setattr(fp, "source", lambda path: read(path) + ("\nEDITED = 1" if path.name == "losses.py" else ""))
    fp.fingerprint.cache_clear()
    after = {e: fp.fingerprint(e) for e in before}
    fp.fingerprint.cache_clear()
    assert after["pdd.training"] != before["pdd.training"]
    assert after["pdd.reports.tables"] == before["pdd.reports.tables"]
    assert after["pdd.evaluation.attacks"] == before["pdd.evaluation.attacks"]


def test_module_file_resolves_modules_and_packages() -> None:
    assert fp.module_file("pdd.losses").name == "losses.py"
    assert fp.module_file("pdd.methods").name == "__init__.py"
    assert fp.module_file("torch.nn") is None and fp.module_file("pdd.no_such_module") is None


def test_code_ignores_formatting_comments_and_docstrings(tmp_path) -> None:
    texts = {
        "documented": '"""Module doc."""\ndef f(x):\n    """Doc of f."""\n    return x + 1\n\n'
                      'def g():\n    """Only doc."""\n',
        "reformatted": "def f( x ):\n    # a comment\n    return (x+1)\n\n\ndef g():\n    pass\n",
        "changed": "def f(x):\n    return x + 2\n\ndef g():\n    pass\n",
    }
    code = {}
    for name, text in texts.items():
        (tmp_path / f"{name}.py").write_text(text)
        code[name] = fp.code(tmp_path / f"{name}.py")
    assert code["documented"] == code["reformatted"] != code["changed"]


def test_a_comment_in_a_covered_module_reruns_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    before = fp.fingerprint("pdd.training")
    read = fp.source
    monkeypatch.setattr(fp, "source", lambda path: read(path) + ("\n# a comment\n" if path.name == "losses.py" else ""))
    fp.fingerprint.cache_clear()
    after = fp.fingerprint("pdd.training")
    fp.fingerprint.cache_clear()
    assert after == before
