"""The plan schema as a Markdown reference (``docs/plan-schema.md``, ``moeplan schema --markdown``).

Generated from the published JSON Schema (:func:`~planner.plans.schema.plan_json_schema`), so the
reference cannot drift from the pydantic models: a test regenerates it and compares.
"""

from __future__ import annotations

from planner.plans.schema import plan_json_schema

__all__ = ["schema_markdown"]

_KINDS = ("Plan", "DeploymentPlan", "FleetPlan", "ClusterPlan", "ScenarioPlan")


def _type(spec: dict) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in spec:
        return " or ".join(_type(s) for s in spec["anyOf"])
    if "const" in spec:
        return f"`{spec['const']!r}`".replace("'", '"')
    if "enum" in spec:
        return " \\| ".join(f'`"{v}"`' for v in spec["enum"])
    t = spec.get("type", "any")
    if t == "array":
        return f"list of {_type(spec.get('items', {}))}"
    if t == "object" and "additionalProperties" in spec and isinstance(spec["additionalProperties"], dict):
        return f"map to {_type(spec['additionalProperties'])}"
    return {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "null",
            "object": "object"}.get(t, str(t))


def _table(name: str, spec: dict) -> str:
    lines = [f"### {name}", ""]
    if spec.get("description"):
        lines += [" ".join(spec["description"].split()), ""]
    required = set(spec.get("required", ()))
    lines += ["| field | type | required | description |", "|---|---|---|---|"]
    for field, f in spec.get("properties", {}).items():
        desc = " ".join(str(f.get("description", "")).split()).replace("|", "\\|")
        lines.append(f"| `{field}` | {_type(f)} | {'yes' if field in required else ''} | {desc} |")
    return "\n".join(lines)


def schema_markdown() -> str:
    """Every plan kind's fields, then every record they use, as Markdown tables (deterministic)."""
    defs = plan_json_schema()["$defs"]
    order = [k for k in _KINDS if k in defs] + sorted(k for k in defs if k not in _KINDS)
    head = ("# Plan schema reference\n\n"
            "Generated from `planner/plans/plan.schema.json` (`moeplan schema --markdown`; a test keeps this page "
            "current). A plan file is one of the kinds below, told apart by `kind`; [plans.md](plans.md) explains "
            "what the fields mean together and how each kind is verified.\n\n"
            "| kind | record |\n|---|---|\n"
            + "\n".join(f"| `{defs[k]['properties']['kind']['const']}` | [{k}](#{k.lower()}) |" for k in _KINDS if k in defs)
            + "\n\n## Plan kinds\n\n")
    kinds = "\n\n".join(_table(k, defs[k]) for k in order if k in _KINDS)
    records = "\n\n".join(_table(k, defs[k]) for k in order if k not in _KINDS)
    return head + kinds + "\n\n## Records\n\n" + records + "\n"
