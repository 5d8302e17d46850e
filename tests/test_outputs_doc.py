"""docs/outputs.md is generated from the output registry and is current."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pdd.plan import outputs_doc
from pdd.plan.outputs import OUTPUTS

from conftest import REPO


def test_checked_in_outputs_page_is_current() -> None:
    """Fails after any edit of an output's title, caption or needs until `python -m pdd.plan.outputs_doc` reruns."""
    assert (REPO / outputs_doc.PAGE).read_text() == outputs_doc.render(), "run `python -m pdd.plan.outputs_doc`"


def test_the_page_names_every_output_with_its_files_and_caption() -> None:
    text = outputs_doc.render()
    for output in OUTPUTS.values():
        assert f"### `{output.name}`" in text and output.title in text and output.caption in text
    assert "`results/tables/table_claims.csv`" in text and "`results/figures/figure1_gradcam.png`" in text


def test_a_registry_edit_changes_the_page(monkeypatch) -> None:
    before = outputs_doc.render()
    changed = {**OUTPUTS, "cost": replace(OUTPUTS["cost"], caption="A new caption.")}
    monkeypatch.setattr(outputs_doc, "OUTPUTS", changed)
    assert outputs_doc.render() != before and "A new caption." in outputs_doc.render()


def test_check_mode_fails_on_a_stale_page(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(outputs_doc, "REPO", tmp_path)
    assert outputs_doc.main(["--check"]) == 1  # absent
    assert outputs_doc.main([]) == 0 and outputs_doc.main(["--check"]) == 0
    page = tmp_path / outputs_doc.PAGE
    page.write_text(page.read_text().replace("table", "tabel", 1))
    assert outputs_doc.main(["--check"]) == 1
