"""A config's data checked against kas's schema, errors turned into one message.

A file found valid is remembered (kasctl.host.cache) by a digest of its bytes,
the schema and this package's validating code, so an unchanged file costs
neither PyYAML nor jsonschema on the next run.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

from kasctl import __version__
from kasctl.config.yaml_lines import compose_with_lines, key_path
from kasctl.errors import ConfigError
from kasctl.host import cache as result_cache

#: The newest config format version kas 5.5 (the image's kas) understands.
NEWEST_FORMAT = 23
FORMAT_REFERENCE = "https://kas.readthedocs.io/en/latest/userguide/project-configuration.html"


@cache
def schema_text() -> str:
    # a plain path, not importlib.resources: that import alone costs more than the read
    package = Path(__file__).resolve().parent.parent  # kasctl/ (this is kasctl/config/...)
    packaged = package / "data" / "schema" / "kas-config.schema.json"
    if not packaged.is_file():  # running from a source checkout
        packaged = package.parent / "schema" / "kas-config.schema.json"
    return packaged.read_text()


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_text())
    return schema


class Count(logging.Filter):
    """Counts the records at or above a level that pass the logger (and lets them pass)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.seen = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            self.seen += 1
        return True


#: The modules whose code decides whether a file is valid (part of the cache key).
VALIDATING = ("yaml_lines", "validate", "files")


@cache
def _verdict_inputs() -> bytes | None:
    """Everything besides the file that decides whether it is valid: the schema, this code."""
    try:
        here = Path(__file__).resolve().parent
        code = b"".join((here / f"{m}.py").read_bytes() for m in VALIDATING)
        return result_cache.digest(__version__.encode(), code, schema_text().encode()).encode()
    except OSError:
        return None


def verdict_key(suffix: str, text: str) -> str | None:
    inputs = _verdict_inputs()
    if inputs is None:
        return None
    parser = b"json" if suffix == ".json" else b"yaml"
    return result_cache.digest(b"kasctl config", inputs, parser, text.encode())


def remembered(
    where: Path | None, key: str | None
) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]] | None:
    """A valid file's data and lines from the cache; None unless the entry is whole."""
    entry = result_cache.load(where, key) if key is not None else None
    if not isinstance(entry, dict):
        return None
    data, pairs = entry.get("data"), entry.get("lines")
    if not isinstance(data, dict) or not isinstance(pairs, list):
        return None
    lines = {}
    for pair in pairs:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], list)
            and isinstance(pair[1], int)
        ):
            return None
        lines[tuple(pair[0])] = pair[1]
    return data, lines


def parse_and_validate(path: Path, text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    shown = str(path)
    lines: dict[tuple[Any, ...], int] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"JSON syntax error: {exc.msg}",
                where=f"{shown}:{exc.lineno}",
                fix="check the commas, quotes and brackets there (JSON allows no trailing comma)",
            ) from None
    else:
        import yaml

        try:
            data, lines = compose_with_lines(text, shown)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{shown}:{mark.line + 1}" if mark else shown
            problem = exc.problem or exc.context or "invalid YAML"
            if "\\t" in problem:
                fix = "YAML indents with spaces only: replace the tab"
            elif "another document" in problem:
                problem = "a second document (kas reads one)"
                fix = "a kas config is one YAML document: remove the second `---`"
            else:
                fix = "check the indentation, colons and quotes on that line and the one before"
            raise ConfigError(f"YAML syntax error: {problem}", where=where, fix=fix) from None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"YAML error: {exc}",
                where=shown,
                fix="a kas config is plain YAML text: remove control characters",
            ) from None

    if data is None:
        raise ConfigError(
            "config file is empty",
            where=shown,
            fix="a kas config needs at least `header: {version: 14}`",
        )
    _validate(data, lines, shown)
    return data, lines


def _validate(data: Any, lines: dict[tuple[Any, ...], int], shown: str) -> None:
    import jsonschema  # heavy: only imported when a file is actually validated

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(
        validator.iter_errors(data),
        key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]),
    )
    if not errors:
        version = data.get("header", {}).get("version")
        if isinstance(version, int) and version > NEWEST_FORMAT:
            raise ConfigError(
                f"header.version {version} is newer than this kasctl's kas understands "
                f"(at most {NEWEST_FORMAT})",
                where=f"{shown}:{lines.get(('header', 'version'), 1)}",
                fix="upgrade kasctl, or lower header.version",
            )
        return
    try:
        best = jsonschema.exceptions.best_match(errors)
    except TypeError:  # keys of mixed types (1 and "a") cannot be ordered: take the first
        best = errors[0]
    path = tuple(best.absolute_path)
    if best.validator == "additionalProperties" and isinstance(best.instance, dict):
        known = best.schema.get("properties", {})
        unknown = [k for k in best.instance if k not in known]
        if unknown:  # point at the offending key's own line
            path += (unknown[0],)
    line = next((lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines), 1)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    fix = f"see the kas config format: {FORMAT_REFERENCE}"
    if not path and best.validator == "type":
        fix = "a kas config is a mapping that starts with `header: {version: 14}`"
    raise ConfigError(
        f"{key_path(path)}: {_describe(best)}{more}", where=f"{shown}:{line}", fix=fix
    )


TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


def _expected(schema: Any) -> str:
    """What a (sub)schema accepts, in words: `'0.10'`, `an integer >= 1`, `a mapping`."""
    if not isinstance(schema, dict):
        return "a valid value"
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return " or ".join(map(repr, schema["enum"]))
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    text = " or ".join(TYPE_NAMES.get(k, k) for k in kinds) or "a valid value"
    if "minimum" in schema:
        text += f" >= {schema['minimum']}"
    if schema.get("required"):
        text += " with " + " and ".join(map(repr, schema["required"]))
    return text


def _describe(error: Any) -> str:
    """A short message for a schema error, without dumping the whole schema."""
    if error.validator == "additionalProperties":
        return str(error.message).replace("Additional properties are not allowed", "unknown key(s)")
    if error.validator in ("enum", "const"):
        allowed = error.validator_value if error.validator == "enum" else [error.validator_value]
        return f"{error.instance!r} is not one of {', '.join(map(repr, allowed))}"
    if error.validator in ("anyOf", "oneOf"):
        choices = " or ".join(_expected(s) for s in error.validator_value)
        return f"{error.instance!r} is not valid here: expected {choices}"
    if error.validator == "type":
        return f"{error.instance!r} is not {_expected({'type': error.validator_value})}"
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            return f"the required key {missing[0]!r} is missing"
    return str(error.message)
