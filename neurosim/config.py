"""Typed, frozen configuration dataclasses with TOML in and out and clear validation errors.

Every config in neurosim is a frozen, keyword-only dataclass deriving from :class:`Config`.
Invariants are checked in ``__post_init__`` with :func:`check_range` / :func:`check_choice`,
which raise :class:`ValueError` naming the field and the allowed range. Unknown keys in a
dict or TOML file raise :class:`ValueError` naming the key and listing the allowed ones, so a
typo in ``--config FILE.toml`` fails before any work starts.

Nested configs are dataclass-typed fields; in TOML they are tables::

    seed = 3
    [model]
    n_levels = 4
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

# The package's one integer check lives in the lowest layer, the retina (which must not import
# neurosim), and is the same function here: check_int(name, value, lo, hi) -> int.
from retina._checks import check_int

__all__ = [
    "Config",
    "check_int",
    "check_range",
    "check_choice",
    "check_positive_int",
    "check_per_level",
    "check_seed",
]

C = TypeVar("C", bound="Config")


def check_range(
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_inclusive: bool = True,
    hi_inclusive: bool = True,
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` lies in the given interval.

    ``None`` for a bound means unbounded on that side. NaN is always rejected.
    """
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
    if not bad:
        if lo is not None:
            bad = value < lo if lo_inclusive else value <= lo
        if hi is not None and not bad:
            bad = value > hi if hi_inclusive else value >= hi
    if bad:
        left = "(-inf" if lo is None else ("[" if lo_inclusive else "(") + f"{lo:g}"
        right = "inf)" if hi is None else f"{hi:g}" + ("]" if hi_inclusive else ")")
        raise ValueError(f"{name} must be in {left}, {right}; got {value!r}")


def check_positive_int(name: str, value: int, hi: int | None = None) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 1 (and <= ``hi`` if given)."""
    check_int(name, value, 1, hi)


def check_seed(name: str, value: int, hi: int = 2**31 - 1) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int in ``[0, hi]`` (a seed).

    The default bound fits every generator the package feeds (numpy, torch, scikit-learn).
    """
    if isinstance(value, bool) or not isinstance(value, int):  # a numpy integer is not a seed
        raise ValueError(f"{name} must be an integer in [0, {hi}]; got {value!r}")
    check_int(name, value, 0, hi)


def check_per_level(name: str, value: int | tuple[int, ...], n_levels: int) -> tuple[int, ...]:
    """Validate a size given once for all levels or once per level; return one per level.

    ``value`` is an int >= 1 (every level) or a tuple of ``n_levels`` ints >= 1. Raises
    ``ValueError`` naming ``name`` (and the entry, ``name[i]``) and the allowed values.
    """
    if isinstance(value, tuple):
        if len(value) != n_levels:
            raise ValueError(
                f"{name} must be an integer >= 1 or a list of n_levels={n_levels} integers "
                f">= 1 (one per level); got {len(value)} entries {list(value)}"
            )
        for i, v in enumerate(value):
            check_positive_int(f"{name}[{i}]", v)
        return value
    check_positive_int(name, value)
    return (value,) * n_levels


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}; got {value!r}")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config_type(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Config)


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert a TOML/dict value to the annotated type (tuples from lists, floats from ints)."""
    if _is_config_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} must be a table of {tp.__name__} fields; got {value!r}")
        return tp.from_dict(value, _prefix=f"{name}.")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, arg, value)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if errors else f"{name}: cannot convert {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list; got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{name}[{i}]", args[0], v) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ValueError(f"{name} must have {len(args)} entries; got {len(value)}")
        return tuple(
            _coerce(f"{name}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is typing.Literal:
        check_choice(name, value, args)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number; got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer; got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false; got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string; got {value!r}")
        return value
    return value


def _to_plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def _moved_message(cls: type, prefix: str, key: str) -> str | None:
    """The error for a key that moved to a nested table (``cls.moved_keys``), or None."""
    new = cls.moved_keys.get(key)
    if new is None:
        return None
    table, _, field = f"{prefix}{new}".rpartition(".")
    return (
        f"config key {prefix}{key} has moved: it is now {field} in the [{table}] table "
        f"({prefix}{new})"
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Base of all neurosim configs: frozen, keyword-only, validated, TOML round-trippable.

    ``moved_keys`` (a class attribute) maps keys a config no longer has to their new dotted
    place below it (e.g. ``{"n_columns": "model.n_columns"}``), so an old file fails with a
    message naming the new table.
    """

    moved_keys: ClassVar[dict[str, str]] = {}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], *, _prefix: str = "") -> C:
        """Build from a (possibly nested) mapping; unknown keys raise ``ValueError``."""
        names = cls.field_names()
        unknown = [k for k in data if k not in names]
        if unknown:
            moved = _moved_message(cls, _prefix, unknown[0])
            if moved:
                raise ValueError(moved)
            raise ValueError(
                f"unknown config key {_prefix}{unknown[0]!s} for {cls.__name__}; "
                f"allowed keys: {', '.join(names)}"
            )
        hints = _field_types(cls)
        kwargs = {k: _coerce(f"{_prefix}{k}", hints[k], v) for k, v in data.items()}
        try:
            return cls(**kwargs)
        except ValueError as err:
            if _prefix and not str(err).startswith(_prefix):
                raise ValueError(f"{_prefix}{err}") from None
            raise

    @classmethod
    def from_toml(cls: type[C], text: str) -> C:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config is not valid TOML: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls: type[C], path: str | Path) -> C:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        return cls.from_toml(path.read_text())

    def updated(self: C, overrides: Mapping[str, Any], *, _prefix: str = "") -> C:
        """Return a copy with ``overrides`` applied (nested tables update nested configs).

        Unknown keys and invalid values raise ``ValueError`` naming the key.
        """
        names = self.field_names()
        hints = _field_types(type(self))
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in names:
                moved = _moved_message(type(self), _prefix, key)
                if moved:
                    raise ValueError(moved)
                raise ValueError(
                    f"unknown config key {_prefix}{key} for {type(self).__name__}; "
                    f"allowed keys: {', '.join(names)}"
                )
            current = getattr(self, key)
            if isinstance(current, Config) and isinstance(value, Mapping):
                changes[key] = current.updated(value, _prefix=f"{_prefix}{key}.")
            else:
                changes[key] = _coerce(f"{_prefix}{key}", hints[key], value)
        try:
            return dataclasses.replace(self, **changes)
        except ValueError as err:
            if _prefix and not str(err).startswith(_prefix):
                raise ValueError(f"{_prefix}{err}") from None
            raise

    def updated_from_toml(self: C, text: str) -> C:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config is not valid TOML: {err}") from None
        return self.updated(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists, ``None`` fields are dropped for TOML)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = _to_plain(value)
        return out

    def to_toml(self) -> str:
        """TOML text that :meth:`from_toml` reads back to an equal config."""
        import tomli_w  # only writing TOML needs it (reading uses the standard tomllib)

        return tomli_w.dumps(self.to_dict())


def check_device(device: Any, name: str = "device", *, available: bool = True) -> str:
    """Return ``device`` if it names a device neurosim runs on; else ``ValueError``.

    The one device check of the package, shared by the experiments' ``run`` functions, the
    ``neurosim`` command (``name="--device"``) and sweeps (``name="device"`` of the file).
    Allowed: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (a :class:`torch.device` is taken as its
    text). With ``available`` (default) a CUDA device must also exist here: torch must see a GPU
    and, for ``cuda:N``, at least ``N + 1`` of them. torch is imported only to check a CUDA device.
    The message names ``name`` and what is allowed, e.g.
    ``"device must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index); got 'gpu'"``.
    """
    if hasattr(device, "type") and hasattr(device, "index") and not isinstance(device, str):
        device = str(device)  # torch.device("cuda", 0) -> "cuda:0"
    index = device[5:] if isinstance(device, str) and device.startswith("cuda:") else ""
    if not isinstance(device, str) or not (
        device in ("cpu", "cuda") or (index.isascii() and index.isdigit())
    ):
        raise ValueError(
            f"{name} must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index); got {device!r}"
        )
    if device == "cpu" or not available:
        return device
    import torch

    if not torch.cuda.is_available():
        built = "" if torch.version.cuda else " (built without CUDA)"
        raise ValueError(
            f"{name} is {device!r} but torch {torch.__version__}{built} sees no CUDA GPU "
            "here; use 'cpu'"
        )
    n_gpus = torch.cuda.device_count()
    if int(index or 0) >= n_gpus:
        raise ValueError(
            f"{name} is {device!r} but torch sees {n_gpus} GPU(s) here: allowed are 'cpu', "
            f"'cuda' and 'cuda:0' .. 'cuda:{n_gpus - 1}'"
        )
    return device


__all__ += ["check_device"]
