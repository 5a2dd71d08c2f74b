"""Reading the CloudFormation templates in deploy/: YAML with the short-form tags, as plain data.

`!Ref X` becomes {"Ref": "X"}, `!GetAtt A.B` {"Fn::GetAtt": ["A", "B"]}, `!Sub s` {"Fn::Sub": s},
and so on: the long form CloudFormation itself uses, so tests compare plain dicts and lists.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TEMPLATES = sorted(DEPLOY.glob("*.yaml"))


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _construct)


def load(name: str) -> dict[str, Any]:
    """A template by file name (`pipeline.yaml`), tags in long form."""
    return load_text((DEPLOY / name).read_text())


def load_text(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    assert isinstance(data, dict)
    return data


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """The resources of one type, by logical id."""
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id].get("Properties", {}))


def default(template: dict[str, Any], parameter: str) -> Any:
    return template["Parameters"][parameter]["Default"]


def walk(value: Any) -> Iterator[Any]:
    """Every dict, list and scalar inside a value, depth first."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def references(value: Any) -> set[str]:
    """Logical ids and parameters a value refers to (Ref, GetAtt, names inside Sub strings)."""
    found: set[str] = set()
    for item in walk(value):
        if not isinstance(item, dict):
            continue
        if "Ref" in item and isinstance(item["Ref"], str):
            found.add(item["Ref"])
        if "Fn::GetAtt" in item:
            target = item["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".")[0])
        if "Fn::Sub" in item:
            sub = item["Fn::Sub"]
            text = sub if isinstance(sub, str) else sub[0]
            local = set(sub[1]) if isinstance(sub, list) else set()
            found |= {name for name in _SUB_NAME.findall(text) if name not in local}
    return found


def imports(template: dict[str, Any]) -> set[str]:
    """Export names a template imports, with `${PipelineStackName}` left in."""
    names = set()
    for item in walk(template):
        if isinstance(item, dict) and "Fn::ImportValue" in item:
            value = item["Fn::ImportValue"]
            names.add(value["Fn::Sub"] if isinstance(value, dict) else value)
    return names


def with_conditions(template: dict[str, Any], values: dict[str, bool]) -> dict[str, Any]:
    """The template as CloudFormation sees it once these conditions are decided: resources and
    outputs of a false condition gone, `Fn::If` on them replaced by the branch taken, and
    AWS::NoValue removed. (For an emulator that cannot create what a branch needs.)"""
    no_value = {"Ref": "AWS::NoValue"}

    def decide(value: Any) -> Any:
        if isinstance(value, dict):
            if "Fn::If" in value:
                condition, yes, no = value["Fn::If"]
                if condition in values:
                    return decide(yes if values[condition] else no)
                return {"Fn::If": [condition, decide(yes), decide(no)]}  # undecided: both branches kept
            return {k: d for k, v in value.items() if (d := decide(v)) != no_value}
        if isinstance(value, list):
            return [d for v in value if (d := decide(v)) != no_value]
        return value

    out = copy.deepcopy(template)
    for section in ("Resources", "Outputs"):
        out[section] = {
            k: decide(v) for k, v in out.get(section, {}).items()
            if values.get(v.get("Condition", ""), True)
        }
    return out


def without(template: dict[str, Any], drop: set[str]) -> tuple[dict[str, Any], set[str]]:
    """The template without the resource types in `drop` (a type ending in `*` is a prefix),
    nor what refers to them, for an emulator that cannot create them. Returns the template and
    the logical ids removed."""
    out = copy.deepcopy(template)
    res = out["Resources"]

    def dropped(type_: str) -> bool:
        return any(type_ == d or (d.endswith("*") and type_.startswith(d[:-1])) for d in drop)

    removed = {k for k, v in res.items() if dropped(v["Type"])}
    while True:
        more = {k for k, v in res.items() if k not in removed and references(v.get("Properties", {})) & removed}
        if not more:
            break
        removed |= more
    for key in removed:
        del res[key]
    for body in res.values():
        depends = body.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends is not None:
            kept = [d for d in depends if d not in removed]
            if kept:
                body["DependsOn"] = kept
            else:
                del body["DependsOn"]
    out["Outputs"] = {k: v for k, v in out.get("Outputs", {}).items() if not references(v) & removed}
    return out, removed


def to_json(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=1)
