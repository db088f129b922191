"""The search space of ``lstmtext tune`` (the recipe's ``[tune.space]``), checked against the recipe before any
trial, and the recipe as a TOML file (the best trial's recipe, the trial's ``--set`` values).

``[tune.space]`` maps dotted recipe keys to distributions, written as TOML tables:

    [tune.space]
    train.lr = { low = 5e-4, high = 5e-3, log = true }     # a float field: a float range
    encoder.hidden_dim = { low = 150, high = 450, step = 75 }   # an int field: an int range
    train.batch_tokens = { choices = [1000, 2000, 4000] }  # any scalar field: one of these values

Torch-free and Optuna-free, so a space is refused before either loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass
from typing import Any

from lstmtext.config import SECTIONS, Recipe, build_recipe
from lstmtext.errors import UsageError

DIST_KEYS = ("low", "high", "log", "step", "choices")
# Keys a trial may not change: the data decide what the score means, and the time is tune's to give.
FIXED = {
    "data.train": "the data stay the same in every trial (--train)",
    "data.dev": "the data stay the same in every trial (--dev)",
    "train.max_time": "each trial's time is tune.trial_time, within --max-time",
    "init.recipe": "every trial starts from the same checkpoint, built before the first",
    "init.checkpoint": "every trial starts from the same checkpoint, built before the first",
}
EXAMPLE = "{ low = 0.1, high = 0.5 }, { low = 100, high = 400, step = 50 } or { choices = [1, 2] }"


@dataclass(frozen=True)
class Param:
    """One dimension of the space: a float or int range, or a set of choices."""

    key: str  # the dotted recipe key, also the parameter's name in the Optuna study
    kind: str  # "float" | "int" | "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The value an Optuna trial samples for this key."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is a point of this dimension (a choice, or in the range on its step)."""
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        n = (value - self.low) / self.step if self.step else 0
        return abs(n - round(n)) <= 1e-9

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.key} in {list(self.choices)}"
        extra = " log" if self.log else (f" step {self.step}" if self.step else "")
        return f"{self.key} in [{self.low}, {self.high}]{extra}"


def field_types(recipe: Recipe) -> dict[str, Any]:
    """Every key a trial may set (``section.key``, the task's own section too) with its field's type."""
    out: dict[str, Any] = {}
    for section in [*SECTIONS, recipe.task]:
        if section == "tune":
            continue
        obj = recipe.options if section == recipe.task else getattr(recipe, section)
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            out[f"{section}.{f.name}"] = hints[f.name]
    return out


def parse_space(recipe: Recipe) -> list[Param]:
    """The recipe's ``[tune.space]`` as Params; each refusal names the key. Besides its form, each range's ends
    and each choice are tried in the recipe, so a value the recipe refuses (a dropout of 1) is reported now
    rather than when a trial samples it."""
    raw = recipe.tune.space
    if not raw:
        raise UsageError(
            "nothing to tune: the recipe has no [tune.space]; add one, e.g. "
            "[tune.space] train.lr = { low = 5e-4, high = 5e-3, log = true }"
        )
    types = field_types(recipe)
    params = [_param(key, spec, types) for key, spec in _flatten(raw).items()]
    base = recipe.to_dict()
    for p in params:
        for value in p.choices or (p.low, p.high):
            try:
                build_recipe(recipe.task, type(recipe.options), stored=base, overrides=[set_item(p.key, value)])
            except UsageError as e:
                raise UsageError(f"[tune.space] {p.key}: the value {value!r} makes the recipe invalid ({e})") from None
    return params


def _flatten(raw: dict, prefix: str = "") -> dict[str, Any]:
    """``train.lr = {...}`` in TOML is the table train → lr → {...}: a table that is no distribution holds keys."""
    out: dict[str, Any] = {}
    for name, spec in raw.items():
        key = f"{prefix}{name}"
        if isinstance(spec, dict) and spec and not set(spec) & set(DIST_KEYS):
            out.update(_flatten(spec, key + "."))
        else:
            out[key] = spec
    return out


def _type_name(typ: Any) -> str:
    return getattr(typ, "__name__", str(typ))


def fits(value: Any, typ: Any) -> bool:
    """Whether ``value`` is already of the field's type (no coercion: a choice of "1" for an int field is a typo)."""
    if typ is bool or isinstance(value, bool):
        return typ is bool and isinstance(value, bool)
    if typ is int:
        return isinstance(value, int)
    if typ is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return typ is str and isinstance(value, str)


def _param(key: str, spec: Any, types: dict[str, Any]) -> Param:
    where = f"[tune.space] {key}"
    if key not in types:
        near = difflib.get_close_matches(key, list(types), n=1)
        hint = (
            f"; did you mean {near[0]}?"
            if near
            else f" (sections: {', '.join(sorted({k.split('.')[0] for k in types}))})"
        )
        raise UsageError(f"{where}: not a key of this recipe{hint}")
    if key in FIXED:
        raise UsageError(f"{where}: cannot be tuned: {FIXED[key]}")
    typ = types[key]
    if typ not in (bool, int, float, str):
        raise UsageError(f"{where}: a {_type_name(typ)} field cannot be tuned; only numbers, strings and booleans")
    if not isinstance(spec, dict):
        raise UsageError(f"{where}: expected a table such as {EXAMPLE}, got {spec!r}")
    unknown = [k for k in spec if k not in DIST_KEYS]
    if unknown:
        raise UsageError(f"{where}: unknown key '{unknown[0]}' (valid: {', '.join(DIST_KEYS)})")
    if "choices" in spec:
        return _choices(where, key, spec, typ)
    return _range(where, key, spec, typ)


def _choices(where: str, key: str, spec: dict, typ: Any) -> Param:
    if set(spec) != {"choices"}:
        raise UsageError(f"{where}: choices cannot be combined with low, high, step or log")
    choices = spec["choices"]
    if not isinstance(choices, list) or not choices:
        raise UsageError(f"{where}: choices must be a non-empty list, got {choices!r}")
    for c in choices:
        if not fits(c, typ):
            raise UsageError(f"{where}: the choice {c!r} is not a {_type_name(typ)}, the type of {key}")
    return Param(key, "choice", choices=tuple(choices))


def _range(where: str, key: str, spec: dict, typ: Any) -> Param:
    if "low" not in spec or "high" not in spec:
        raise UsageError(f"{where}: expected low and high (or choices), as in {EXAMPLE}")
    if typ not in (int, float):
        raise UsageError(f"{where}: {key} is a {_type_name(typ)}; give it choices = [...] instead of a range")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for name, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and not fits(v, typ):
            want = "a whole number" if typ is int else "a finite number"
            raise UsageError(f"{where}: {name} = {v!r}: expected {want} ({key} is a {_type_name(typ)})")
    if not isinstance(log, bool):
        raise UsageError(f"{where}: log must be true or false, got {log!r}")
    if low >= high:
        raise UsageError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise UsageError(f"{where}: a log range needs low above 0, got {low}")
    if step is not None:
        if step <= 0 or log:
            raise UsageError(f"{where}: step must be positive and cannot be combined with log")
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9:
            raise UsageError(f"{where}: high - low ({high - low}) must be a multiple of step ({step})")
    return Param(key, "int" if typ is int else "float", low, high, log, step)


# -- TOML --------------------------------------------------------------------------------------------------
def toml_value(value: Any) -> str:
    """A TOML literal that reads back as ``value`` exactly (floats by repr, which round-trips)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(
            "\\\\"
            if ch == "\\"
            else '\\"'
            if ch == '"'
            else f"\\u{ord(ch):04x}"
            if ord(ch) < 32 or ord(ch) == 127
            else ch
            for ch in value
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def set_item(key: str, value: Any) -> str:
    """``--set KEY=VALUE`` for a sampled value."""
    return f"{key}={toml_value(value)}"


def recipe_toml(recipe: dict, comments: list[str]) -> str:
    """A recipe dict (``Recipe.to_dict``) as a recipe file: comment lines, ``task``, then one table per section."""
    lines = [f"# {' '.join(c.split())}".rstrip() for c in comments]
    lines.append(f"task = {toml_value(recipe['task'])}")
    for section, values in recipe.items():
        if section == "task":
            continue
        lines += ["", f"[{section}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
