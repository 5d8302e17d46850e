"""config/README.md is generated from the config schema and the shipped configs, and is current."""

from __future__ import annotations

from pathlib import Path

import yaml

from pdd.plan.config_doc import CONFIGS, README, SCHEMA, header_comment, render, rows, type_of

from conftest import REPO


def test_checked_in_config_readme_is_current() -> None:
    """Fails after any schema or config-header edit until `python -m pdd.plan.config_doc` is rerun."""
    assert (REPO / README).read_text() == render(REPO), "run `python -m pdd.plan.config_doc`"


def _leaf_paths(config: dict, prefix: str = "") -> set[str]:
    found = set()
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        found.add(path)
        if isinstance(value, dict):
            found |= _leaf_paths(value, path)
    return found


def _generic(path: str, documented: set[str]) -> bool:
    """Whether a concrete key path ('tables.table2_whitebox_k3.K') matches a documented one ('tables.<name>.K'),
    or lies inside a documented free-form object (one without rows of its own keys, e.g. figure5's `eps`)."""
    def matches(parts: list[str], doc: str) -> bool:
        d = doc.split(".")
        return len(d) == len(parts) and all(p == q or q.startswith("<") for p, q in zip(parts, d))

    parts = path.split(".")
    leaves = {d for d in documented if not any(other.startswith(d + ".") for other in documented)}
    return any(matches(parts, d) for d in documented) or any(
        matches(parts[:n], d) for n in range(1, len(parts)) for d in leaves)


def test_every_key_of_every_shipped_config_is_documented() -> None:
    documented = {row["key"] for row in rows(yaml.safe_load((REPO / SCHEMA).read_text()))}
    for config in CONFIGS:
        keys = _leaf_paths(yaml.safe_load((REPO / config).read_text()))
        missing = sorted(k for k in keys if not _generic(k, documented))
        assert not missing, f"{config}: keys without a row in {README}: {missing}"
        assert f"`{config}`" in render(REPO) and header_comment((REPO / config).read_text())


def test_rows_read_refs_bounds_and_required_keys() -> None:
    schema = {
        "definitions": {"pos": {"type": "integer", "minimum": 1, "description": "a count"}},
        "type": "object", "required": ["a"],
        "properties": {
            "a": {"$ref": "#/definitions/pos"},
            "b": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1,
                  "default": [0.1], "description": "budgets"},
            "c": {"type": "object", "additionalProperties": {"enum": ["x", "y"]}},
        },
    }
    assert list(rows(schema)) == [
        {"key": "a", "type": "integer >= 1", "required": True, "default": None, "description": "a count"},
        {"key": "b", "type": "list of (number > 0) at least 1", "required": False, "default": [0.1],
         "description": "budgets"},
        {"key": "c", "type": "object", "required": False, "default": None, "description": ""},
        {"key": "c.<name>", "type": "one of x, y", "required": False, "default": None, "description": ""},
    ]
    assert type_of({"type": ["integer", "null"], "minimum": 1}, schema) == "integer or null >= 1"
    assert header_comment("# One line.\n#   cmd --x\n# Two.\nkey: 1\n# not header\n") == "One line. `cmd --x` Two."


def test_config_readme_check_mode_fails_on_a_stale_file(tmp_path: Path, monkeypatch) -> None:
    from pdd.plan import config_doc

    for rel in (SCHEMA, *CONFIGS):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((REPO / rel).read_text())
    monkeypatch.setattr(config_doc, "REPO", tmp_path)
    assert config_doc.main([]) == 0 and config_doc.main(["--check"]) == 0
    (tmp_path / README).write_text((tmp_path / README).read_text().replace("| yes |", "|  |", 1))
    assert config_doc.main(["--check"]) == 1


def test_each_config_row_states_its_sizes_from_its_values() -> None:
    """The Fashion-MNIST header once said PGD '10/50/100 x 5' where the code ran 10/50/200: sizes come from the
    values (through the settings dataclasses, defaults included), never from a comment."""
    from pdd.evaluation.strong import StrongSettings
    from pdd.plan.config_doc import sizes

    fashion = yaml.safe_load((REPO / "config" / "fashion_mnist_cpu.yaml").read_text())
    steps = fashion["strong_evaluation"]["pgd"]["steps"]
    assert f"PGD at {' / '.join(map(str, steps))} steps" in sizes(fashion)
    fashion["strong_evaluation"]["pgd"]["steps"] = [10, 60]
    fashion["datasets"]["fashion_mnist"]["epochs"] = 7
    assert "PGD at 10 / 60 steps" in sizes(fashion) and "epochs fashion_mnist 7" in sizes(fashion)
    del fashion["strong_evaluation"]["square"]  # a key left out: the dataclass default
    assert f"Square {StrongSettings().square_queries} queries" in sizes(fashion)
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    assert "digits stands in for the paper's cifar100" in sizes(demo)
