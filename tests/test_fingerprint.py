"""Code fingerprints: each rule's hash covers exactly the package modules its command imports."""

from __future__ import annotations

import pytest

from pdd import fingerprint as fp


def test_closure_follows_imports_and_leaves_out_the_cli_and_version() -> None:
    training = fp.closure(("pdd.training",))
    assert {"pdd.training", "pdd.losses", "pdd.models", "pdd.dropout", "pdd.data", "pdd.methods",
            "pdd.methods.deg", "pdd.methods.dverge"} <= set(training)
    assert "pdd.cli" not in training and "pdd" not in training and "pdd.tables" not in training
    tables = fp.closure(("pdd.tables",))
    assert "pdd.tables" in tables and "pdd.losses" not in tables and "pdd.training" not in tables


def test_fingerprint_changes_with_the_code_it_covers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {e: fp.fingerprint(e) for e in ("pdd.training", "pdd.tables", "pdd.attacks")}
    read = fp.source
    monkeypatch.setattr(fp, "source", lambda path: read(path) + ("\n# edited" if path.name == "losses.py" else ""))
    fp.fingerprint.cache_clear()
    after = {e: fp.fingerprint(e) for e in before}
    fp.fingerprint.cache_clear()
    assert after["pdd.training"] != before["pdd.training"]
    assert after["pdd.tables"] == before["pdd.tables"] and after["pdd.attacks"] == before["pdd.attacks"]


def test_module_file_resolves_modules_and_packages() -> None:
    assert fp.module_file("pdd.losses").name == "losses.py"
    assert fp.module_file("pdd.methods").name == "__init__.py"
    assert fp.module_file("torch.nn") is None and fp.module_file("pdd.no_such_module") is None
