"""YAML parsed with the line of every key, so an error can name its line."""

from __future__ import annotations

import logging
from typing import Any

from kasctl.errors import ConfigError

log = logging.getLogger("kasctl")


MERGE_TAG = "tag:yaml.org,2002:merge"


def compose_with_lines(text: str, shown: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML into plain data plus a map from key path to 1-based line."""
    import yaml  # not needed when the file's verdict is cached

    lines: dict[tuple[Any, ...], int] = {}
    loader = yaml.SafeLoader(text)
    seen: set[int] = set()

    def walk(n: yaml.Node, path: tuple[Any, ...]) -> None:
        if id(n) in seen:  # an alias already walked (or a recursive one)
            return
        seen.add(id(n))
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            given: dict[Any, int] = {}
            for key, value in n.value:
                if key.tag == MERGE_TAG:  # `<<: *anchor`: its keys land on this level
                    walk(value, path)
                    continue
                if not isinstance(key, yaml.ScalarNode):
                    raise ConfigError(
                        "a mapping key must be a plain value, not a list or mapping",
                        where=f"{shown}:{key.start_mark.line + 1}",
                        fix="write the key as a plain word or a quoted string",
                    )
                name = loader.construct_object(key, deep=True)
                line = key.start_mark.line + 1
                if name in given:
                    # kas (PyYAML) silently keeps the last one: a lost block is worth a word
                    log.warning(
                        "%s:%d: %s is given twice (also on line %d); the later one wins",
                        shown,
                        line,
                        key_path(path + (name,)),
                        given[name],
                    )
                given.setdefault(name, line)
                child = path + (name,)
                lines[child] = line
                walk(value, child)
        elif isinstance(n, yaml.SequenceNode):
            for index, item in enumerate(n.value):
                walk(item, path + (index,))

    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        walk(node, ())
        data = loader.construct_document(node)
    except RecursionError:
        # PyYAML's composer and walk() recurse once per level: only nesting hundreds of
        # levels deep gets here (an alias to its own anchor is walked once: see `seen`)
        raise ConfigError(
            "the YAML nests too deeply to be read (hundreds of levels)",
            where=shown,
            fix="a kas config needs only a few levels of nesting: flatten the deep value",
        ) from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # PyYAML's constructors raise these for values like `!!int x` or 2001-02-30
        raise ConfigError(
            f"cannot read a YAML value: {exc}",
            where=shown,
            fix="quote the value (e.g. '2001-02-30') or remove its !! tag",
        ) from None
    finally:
        loader.dispose()
    return data, lines


def key_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
