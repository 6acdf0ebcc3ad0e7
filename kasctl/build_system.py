"""The build system a run is for (kas's `build_system`): what the container must allow.

A leaf every part of kasctl may import cheaply: the config reader resolves it,
the planner and the privileges decide by it, the command line overrides it.
"""

from __future__ import annotations

import enum
import logging

from kasctl.errors import ConfigError

log = logging.getLogger("kasctl")


class BuildSystem(enum.Enum):
    """What the container must allow; the value is kas's own spelling."""

    OPENEMBEDDED = "openembedded"
    ISAR_PRIVILEGED = "isar-privileged"
    ISAR_ROOTLESS = "isar-rootless"

    @classmethod
    def named(cls, text: str) -> BuildSystem | None:
        """What kas takes a build_system value to mean (None: not one of its names)."""
        match text:
            case "openembedded" | "oe":
                return cls.OPENEMBEDDED
            case "isar" | "isar-privileged":
                return cls.ISAR_PRIVILEGED
            case "isar-rootless":
                return cls.ISAR_ROOTLESS
        return None

    @classmethod
    def parse(cls, text: str, where: str) -> BuildSystem:
        found = cls.named(text)
        if text == "isar":
            log.warning(
                "%s: build_system 'isar' is deprecated and means isar-privileged; "
                "write isar-privileged or isar-rootless",
                where,
            )
        if found is not None:
            return found
        raise ConfigError(
            f"unknown build_system {text!r}",
            where=where,
            fix="use one of openembedded, oe, isar-privileged, isar-rootless",
        )

    @property
    def is_isar(self) -> bool:
        return self is not BuildSystem.OPENEMBEDDED
