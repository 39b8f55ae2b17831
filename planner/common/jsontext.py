"""JSON text from a user's file: one parser, one way of naming what is wrong and where."""

from __future__ import annotations

import json
from typing import Any

from planner.errors import InputError

__all__ = ["parse_json", "parse_json_object"]


def parse_json(text: str, where: str) -> Any:
    """Parse ``text``; an :class:`~planner.errors.InputError` names ``where``, the line and the column.

    >>> parse_json('{"a": [1, 2]}', "x.json")
    {'a': [1, 2]}
    >>> parse_json('{"a": }', "x.json")
    Traceback (most recent call last):
    ...
    planner.errors.InputError: x.json: malformed JSON at line 1, column 7: Expecting value
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{where}: malformed JSON: nested too deeply") from None


def parse_json_object(text: str, where: str) -> dict:
    """:func:`parse_json` for documents whose top level must be an object."""
    doc = parse_json(text, where)
    if not isinstance(doc, dict):
        raise InputError(f"{where}: top level must be a JSON object, got {type(doc).__name__}")
    return doc
