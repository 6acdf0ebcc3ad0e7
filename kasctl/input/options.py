"""kasctl's options as given, one object: the fields kasctl.spec's option table fills."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from kasctl.build_system import BuildSystem
from kasctl.decide.credentials import CredentialOptions
from kasctl.errors import UsageError
from kasctl.spec import DEFAULTS


class Options:
    """kasctl's options as given: one attribute per field the option table fills.

    Built from the parsed values (cmdline.Parsed.options(): the command's own
    win); an option not given has its table default. The attributes are
    exactly kasctl.spec's dests, nothing is declared twice: an unknown name
    is an AttributeError.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        unknown = sorted(set(values or {}) - set(DEFAULTS))
        if unknown:
            raise TypeError(f"not an option's field: {', '.join(unknown)}")
        self._values = dict(values or {})

    @classmethod
    def given(cls, values: Mapping[str, Any]) -> Options:
        """From the options as given (cmdline.Parsed.options(): the command's own win)."""
        return cls(values)

    def __getattr__(self, dest: str) -> Any:
        if dest not in DEFAULTS:
            raise AttributeError(f"kasctl has no option filling {dest!r}")
        return self._values.get(dest, DEFAULTS[dest])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and self._values == other._values

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Options({self._values!r})"

    def replaced(self, **changes: Any) -> Options:
        return Options({**self._values, **changes})

    @property
    def credentials(self) -> CredentialOptions:
        """The credential options (their fields are the table's dests of the same names)."""
        names = (f.name for f in fields(CredentialOptions))
        return CredentialOptions(**{name: getattr(self, name) for name in names})

    def build_system_override(self) -> BuildSystem | None:
        if self.isar_rootless and self.isar_privileged:
            raise UsageError(
                "--isar-rootless and --isar-privileged exclude each other",
                fix="choose one (or leave both out and let the config's build_system decide)",
            )
        if self.isar_rootless:
            return BuildSystem.ISAR_ROOTLESS
        if self.isar_privileged:
            return BuildSystem.ISAR_PRIVILEGED
        return None
