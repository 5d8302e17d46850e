"""config/README.md, generated: every shipped config (from its header comment) and every key of the config
schema (its type, bounds, whether it is required, its default and its description; a setting's default and help
from its dataclass field, through `pdd.plan.config`), so the documentation of the config cannot drift from the
schema that validates it or the code that reads it.

    python -m pdd.plan.config_doc            # rewrite config/README.md
    python -m pdd.plan.config_doc --check    # exit 1 if config/README.md is not current
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from pdd.plan.config import attack_settings, config_fields, num_images, stand_ins, strong_settings, train_config, width

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "workflow/schemas/config.schema.yaml"
CONFIGS = ("config/config.yaml", "config/demo.yaml", "config/fashion_mnist_cpu.yaml", ".test/config/config.yaml")
README = "config/README.md"
COMMAND = "python -m pdd.plan.config_doc"
# The placeholder a map's keys get in a key's path, by what names them.
KEY_NAMES = {"dataset": "<dataset>", "attack": "<attack>", "method": "<method>"}


def _resolve(node: dict, schema: dict) -> dict:
    """`node` with a local `$ref` replaced by its definition (the node's own description wins)."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _bounds(node: dict) -> list[str]:
    found = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in node:
            found.append(f"{sign} {node[key]:g}")
    if "pattern" in node:
        found.append(f"matches `{node['pattern']}`")
    if "minItems" in node:
        found.append(f"at least {node['minItems']}")
    if node.get("uniqueItems"):
        found.append("distinct")
    return found


def type_of(node: dict, schema: dict) -> str:
    """A key's type in words: 'number > 0', 'one of resnet18, resnet34, vgg16', 'list of (integer >= 1)'."""
    node = _resolve(node, schema)
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    kinds = node.get("type", "any")
    kinds = " or ".join(kinds) if isinstance(kinds, list) else kinds
    if kinds == "array" and "items" in node:
        inner = type_of(node["items"], schema)
        kinds = f"list of ({inner})" if " " in inner else f"list of {inner}"
    return " ".join([kinds, *_bounds(node)])


def _key_name(node: dict, schema: dict, default: str) -> str:
    ref = node.get("propertyNames", {}).get("$ref", "")
    return KEY_NAMES.get(ref.rsplit("/", 1)[-1], default)


def rows(schema: dict) -> Iterator[dict]:
    """One row per config key, depth first, with the path a user writes ('pdd.intervals.<K>')."""

    def walk(node: dict, path: str, required: bool, placeholder: str = "<name>") -> Iterator[dict]:
        node = _resolve(node, schema)
        if path:
            yield {"key": path, "type": type_of(node, schema), "required": required,
                   "default": node.get("default"), "description": node.get("description", "")}
        for name, child in node.get("properties", {}).items():
            yield from walk(child, f"{path}.{name}" if path else name, name in node.get("required", []))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            key = _key_name(node, schema, {"intervals": "<K>"}.get(path.rsplit(".", 1)[-1], placeholder))
            yield from walk(extra, f"{path}.{key}", False)

    yield from walk(schema, "", True)


def header_comment(text: str) -> str:
    """The leading comment block of a YAML file, as one paragraph (its description of itself); an indented
    comment line (a command) becomes inline code."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:]
        lines.append(f"`{body.strip()}`" if body.startswith("   ") and body.strip() else body.strip())
    return " ".join(line for line in lines if line)


def _images(n: int | None) -> str:
    return "the whole test split" if n is None else f"{n:,} test images"


def sizes(config: dict) -> str:
    """What a config runs, in numbers read from its values (never from its comments, which may not restate them):
    epochs per dataset, member width, attacked images, C&W's iterations and the strong evaluation's sizes."""
    def first(dataset: str) -> int:
        return train_config(config, dataset, 3, "baseline", config["seeds"][0]).epochs

    arch = config["model"]["arch"]
    attack, strong = attack_settings(config), strong_settings(config)
    parts = [
        "epochs " + ", ".join(f"{d} {first(d)}" for d in config["datasets"]),
        f"{arch} members of width {width(config, arch)}",
        f"seeds {', '.join(map(str, config['seeds']))}",
        f"the paper's attacks on {_images(num_images(config, 'evaluation'))} ({attack.steps} BIM / PGD steps; C&W "
        f"{attack.cw_max_iter} iterations x {attack.cw_binary_search_steps} binary-search steps)",
    ]
    if "strong_evaluation" in config:
        parts.append(
            f"the strong evaluation on {_images(num_images(config, 'strong_evaluation'))}: APGD-CE / -DLR "
            f"{strong.apgd_iterations} iterations x {strong.apgd_restarts} restarts, APGD-T on {strong.apgd_targets} "
            f"target classes, MORA {strong.mora_iterations} iterations per mix, Square {strong.square_queries} "
            f"queries, PGD at {' / '.join(map(str, strong.pgd_steps))} steps ({strong.pgd_restarts} restarts at the "
            f"largest), masking checks at {strong.diagnostic_steps} PGD steps")
    for ours, paper in stand_ins(config).items():
        parts.append(f"{ours} stands in for the paper's {paper}")
    return "Sizes, from the values: " + "; ".join(parts) + "."


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(root: Path = REPO) -> str:
    """The text of config/README.md from the schema and the shipped configs under `root`."""
    schema = yaml.safe_load((root / SCHEMA).read_text())
    out = [
        "# Configuration",
        "",
        f"Generated by `{COMMAND}` from `{SCHEMA}` and the shipped configs' header comments;",
        "do not edit by hand (a test fails when this file is not current). A `--configfile` defines the run by",
        "itself: the outputs it does not list under `tables` / `figures` are not built. The schema validates every",
        "config before any job runs; `pdd.plan.checks` adds the checks a schema cannot express (known datasets and",
        "methods, M > K, ...).",
        "",
        "## Shipped configs",
        "",
        "| File | What it runs |",
        "|---|---|",
    ]
    for config in CONFIGS:
        text = (root / config).read_text()
        out.append(f"| `{config}` | {_cell(header_comment(text))} {_cell(sizes(yaml.safe_load(text)))} |")
    out += ["", "## Keys", "",
            "`<dataset>`, `<attack>`, `<method>`, `<K>` and `<name>` stand for keys you choose (a dataset name, an",
            "attack name, ...). Outputs (`tables.<name>`, `figures.<name>`) are named in `pdd/plan/outputs.py`.", "",
            "| Key | Type | Required | Default | Description |", "|---|---|---|---|---|"]
    settings = config_fields()  # a setting's default and help live in its dataclass field, not in the schema
    for row in rows(schema):
        value, help = settings.get(row["key"], (row["default"], ""))
        default = "" if value is None else f"`{json.dumps(value)}`"
        out.append(f"| `{row['key']}` | {_cell(row['type'])} | {'yes' if row['required'] else ''} | {default} | "
                   f"{_cell(row['description'] or help)} |")
    return "\n".join(out) + "\n"


def write_or_check(path: Path, page: str, text: str, command: str, check: bool) -> int:
    """Write the generated page at `path` (`page`: its name in messages), or with `check` exit status 1 when the
    committed one differs from `text`: the one main of every generated page (config/README.md, docs/outputs.md)."""
    if check:
        if not path.exists() or path.read_text() != text:
            print(f"{page} is not current: run `{command}`", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {page}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if config/README.md is not current")
    args = parser.parse_args(argv)
    return write_or_check(REPO / README, README, render(), COMMAND, args.check)


if __name__ == "__main__":
    sys.exit(main())
