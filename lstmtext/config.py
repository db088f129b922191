"""The recipe schema. Each dataclass holds its defaults; TOML files and ``--set a.b=v`` only override them.

A recipe is a TOML file with the sections below plus one section named after the task (``[sentiment]``)
whose schema the task module owns. Unknown sections and keys are errors, so a typo never trains silently
with a default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstmtext.errors import UsageError
from lstmtext.holdout import VALID_BY


def choice(default: str, *others: str) -> Any:
    """A string field that takes one of a fixed set of values. The loader checks it as it reads the recipe, so
    a typo is reported before any data is read or a tokenizer trained."""
    return field(default=default, metadata={"choices": (default, *others)})


# Training (train.precision) takes these; inference (--precision) also takes int8 (api.quantize_int8).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
INFERENCE_PRECISIONS = PRECISIONS + ("int8",)
# Recipe keys added from data.valid_by on, with their defaults: a stored recipe without one had the default, so a
# stage's key and a study's comparison leave it out at that value (training/stages.py, tune.py).
LATER_FIELDS = {"data.valid_by": "example", "data.split_seed": 0, "train.members": 1}


def check_precision(precision: str, option: str = "--precision", choices: tuple = INFERENCE_PRECISIONS) -> None:
    """Torch-free, so a command can refuse a bad value before it imports torch and loads a checkpoint."""
    if precision not in choices:
        raise UsageError(f"{option} {precision}: expected one of {', '.join(choices)}")


@dataclass
class DataConfig:
    # files, folders, glob patterns, PREFIXes, hf:NAME[:CONFIG] or DATASET:SPLIT, read one after another;
    # empty = the sample in data/
    train: list[str] = field(default_factory=list)
    dev: str = ""  # empty = a seeded slice of train (never the split that is reported)
    valid_fraction: float = 0.05
    valid_max: int = 2000  # cap on the slice taken from train, in examples (in sentences when valid_by is sentence)
    valid_by: str = choice(*VALID_BY)  # "sentence": phrase treebanks such as SST-2 (holdout.py)
    split_seed: int = 0  # seeds the held-out slice and the tokenizer's sample; 0 = train.seed (train.members share it)
    max_length: int = 512  # pieces per example; longer inputs are cut so memory stays bounded


@dataclass
class TokenizerConfig:
    vocab_size: int = 8000
    model_type: str = choice("unigram", "bpe")
    character_coverage: float = 0.9995
    max_sentences: int = 300_000  # lines sampled from the training text to train SentencePiece
    max_chars: int = 20_000_000  # characters of that sample at most (0 = no bound): the trainer's memory grows with it


@dataclass
class EncoderConfig:
    cell: str = choice("lstm", "gru")
    embed_dim: int = 256
    hidden_dim: int = 256
    num_layers: int = 1
    embed_dropout: float = 0.1
    dropout: float = 0.3  # between layers and on the encoder's output
    weight_drop: float = 0.0  # DropConnect on the recurrent matrices in training (AWD-LSTM); 0 = off


# What an --init-from checkpoint's weights fix; the dropouts stay this run's choice.
ENCODER_SHAPE = ("cell", "embed_dim", "hidden_dim", "num_layers")


def encoder_shape(recipe: dict) -> dict:
    """The encoder-shape keys of a stored recipe (a checkpoint's): what a run that starts from it inherits."""
    return {k: v for k, v in (recipe or {}).get("encoder", {}).items() if k in ENCODER_SHAPE}


@dataclass
class TrainConfig:
    epochs: int = 10
    max_time: str = ""  # "20m", "1h30m", "90s"; empty = no limit
    max_steps: int = 0  # stop (with resume state) after this many steps; 0 = no limit
    lr: float = 2e-3
    encoder_lr_scale: float = 1.0  # the encoder's lr = lr × this (e.g. 0.3 to fine-tune an --init-from encoder gently)
    weight_decay: float = 0.01
    clip: float = 1.0
    warmup: float = 0.02  # fraction of the run spent warming up the learning rate
    schedule: str = choice("linear", "cosine", "constant")  # after warmup
    batch_tokens: int = 6000  # padded tokens per batch (length-bucketed)
    max_batch_size: int = 128
    eval_every: int = 0  # steps between evaluations; 0 = once per epoch
    patience: int = 4  # evaluations without improvement before stopping; 0 = never stop early
    seed: int = 1
    init_seed: int = 0  # seeds the model's random initial weights alone; 0 = train.seed (see lstmtext average)
    members: int = 1  # models trained one after another (train.seed, +1, …) and kept as one ensemble (ensemble.py)
    device: str = choice("auto", "cpu", "cuda")
    precision: str = choice(*PRECISIONS, "fastest")  # auto: bf16 on CUDA, fp32 on CPU; fastest: training/precision.py
    ema: float = 0.0  # evaluate and save an exponential moving average of the weights with this decay; 0 = off
    sparse_embeddings: bool = False  # row-sparse embedding gradients, lazy Adam on the rows used (training/optim.py)


@dataclass
class InitConfig:
    """Where the run's weights start (training/stages.py); a relative path is relative to the recipe file that
    names it (to the working folder when it comes from --set)."""

    recipe: str = ""  # a recipe (a shipped name or a path) whose checkpoint is built first, then started from
    checkpoint: str = ""  # an existing checkpoint to start from: the recipe form of --init-from


@dataclass
class TuneConfig:
    """``lstmtext tune``: the search over this recipe (``training.train`` ignores the section)."""

    trials: int = 20  # trials one ``lstmtext tune`` runs (--trials)
    trial_time: str = "10m"  # wall time of one trial, reading and tokenizer included; empty = train.max_time
    sampler: str = choice("tpe", "random")
    pruner: str = choice("median", "none")
    startup_trials: int = 5  # trials sampled at random and compared against before TPE and pruning begin
    # dotted recipe key → { low, high[, log][, step] } or { choices = [...] }; lstmtext/tune.py reads it
    space: dict = field(default_factory=dict)


SECTIONS = {
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "encoder": EncoderConfig,
    "train": TrainConfig,
    "init": InitConfig,
    "tune": TuneConfig,
}


@dataclass
class Recipe:
    task: str
    options: Any  # the task's own dataclass, stored under the task's name
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init: InitConfig = field(default_factory=InitConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"task": self.task}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        out[self.task] = dataclasses.asdict(self.options)
        return out


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Bring a TOML or command-line value to the field's type, or say what was expected."""
    origin = typing.get_origin(typ)
    if typ is dict:  # a table whose entries its reader checks (tune.space)
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a table such as {{ low = 0.1, high = 0.5 }}, got {value!r}")
        return value
    if origin is dict:
        return _coerce_table(value, typ, where)
    if origin is list:
        (item,) = typing.get_args(typ) or (str,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, where) for v in value]
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            return str(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: expected {getattr(typ, '__name__', typ)}, got {value!r}") from None
    return value


def _coerce_table(value: Any, typ: Any, where: str) -> dict:
    """A TOML inline table (``{ "0" = "negative" }``), or on the command line ``0=negative,1=positive``."""
    key_type, item_type = typing.get_args(typ) or (str, str)
    example = 'a table such as { "0" = "negative", "1" = "positive" }'
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise UsageError(f"{where}: expected {example} or 0=negative,1=positive, got {value!r}")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected {example}, got {value!r}")
    out = {}
    for k, v in value.items():
        if isinstance(v, (dict, list)):  # a scalar per key; a str() of a table would pass silently
            raise UsageError(f"{where}.{k}: expected {getattr(item_type, '__name__', item_type)}, got {v!r}")
        out[_coerce(k, key_type, where)] = _coerce(v, item_type, f"{where}.{k}")
    return out


def _apply(obj: Any, values: dict, where: str, section: str) -> None:
    hints = typing.get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in fields:
            raise UsageError(f"{where}: unknown key '{key}' in [{section}] (valid: {', '.join(fields)})")
        value = _coerce(value, hints[key], f"{where} {section}.{key}")
        choices = fields[key].metadata.get("choices")
        if choices and value not in choices:
            raise UsageError(f"{where} {section}.{key}: expected one of {', '.join(choices)}, got {value!r}")
        setattr(obj, key, value)


def _apply_section(recipe: Recipe, section: str, values: Any, where: str) -> None:
    valid = [*SECTIONS, recipe.task]
    if section == recipe.task:
        target = recipe.options
    elif section in SECTIONS:
        target = getattr(recipe, section)
    else:
        raise UsageError(f"{where}: unknown section '{section}' (valid: {', '.join(valid)})")
    if not isinstance(values, dict):
        raise UsageError(f"{where}: '{section}' must be a table of keys")
    _apply(target, values, where, section)


def parse_set(item: str) -> tuple[str, str, Any]:
    """``--set SECTION.KEY=VALUE``: the value is read as a TOML literal (``3``, ``0.5``, ``true``, ``"a b"``,
    ``[1, 2]``); anything that is not one (``20m``, ``data/train.tsv``) is taken as a plain string."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w-]*)\.([A-Za-z_]\w*)\s*=(.*)", item, flags=re.DOTALL)
    if not m:
        raise UsageError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set train.lr=0.001")
    raw = m.group(3).strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return m.group(1), m.group(2), value


def build_recipe(
    task: str,
    options_cls: type,
    defaults: dict | None = None,
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    stored: dict | None = None,
    inherited: dict | None = None,
    settings: dict[str, Any] | None = None,
) -> Recipe:
    """Defaults ← the task's own defaults ← a stored recipe (resume) ← a TOML file ← ``inherited`` ←
    ``settings`` (typed command-line options: {"train.epochs": 3}) ← ``--set`` strings.

    ``inherited`` is what an ``--init-from`` checkpoint fixes (its encoder's shape): it beats the recipe file,
    so any recipe can start from any encoder, and only an explicit ``--set`` can contradict it (an error later,
    when the weights do not fit)."""
    recipe = Recipe(task=task, options=options_cls())
    for section, values in (defaults or {}).items():
        _apply_section(recipe, section, values, f"defaults of task '{task}'")
    if stored:
        for section, values in stored.items():
            if section != "task":
                _apply_section(recipe, section, values, "stored recipe")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"recipe {path}: file not found")
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"recipe {path}: not valid TOML ({e})") from None
        file_task = doc.pop("task", task)
        if file_task != task:
            raise UsageError(f"recipe {path} is for task '{file_task}', not '{task}'")
        for section, values in doc.items():
            _apply_section(recipe, section, values, f"recipe {path}")
    for section, values in (inherited or {}).items():
        _apply_section(recipe, section, values, "--init-from checkpoint")
    for dotted, value in (settings or {}).items():
        section, key = dotted.split(".", 1)
        _apply_section(recipe, section, {key: value}, f"--{key.replace('_', '-')}")
    for item in overrides or []:
        section, key, value = parse_set(item)
        _apply_section(recipe, section, {key: value}, "--set")
    validate(recipe)
    return recipe


def validate(recipe: Recipe) -> None:
    """Range checks of the shared sections, then the task's own (its module's ``validate``); types and choices
    were checked as the values were read. Each refusal names the key, the value and what is allowed."""
    from lstmtext.tasks import get_task

    _validate_shared(recipe)
    get_task(recipe.task).validate(recipe.options)


def _refuse(key: str, value: Any, allowed: str) -> None:
    raise UsageError(f"{key}: expected {allowed}, got {value!r}")


def _validate_shared(recipe: Recipe) -> None:
    c, t, d, u = recipe.encoder, recipe.train, recipe.data, recipe.tune
    for name in ("embed_dim", "hidden_dim", "num_layers"):
        if getattr(c, name) < 1:
            raise UsageError(f"encoder.{name}: must be at least 1")
    for name in ("lr", "clip", "warmup", "weight_decay", "encoder_lr_scale", "ema"):
        if not math.isfinite(getattr(t, name)):
            _refuse(f"train.{name}", getattr(t, name), "a finite number")
    if t.lr <= 0 or t.encoder_lr_scale < 0 or t.batch_tokens < 1 or t.epochs < 1:
        raise UsageError("train: lr, batch_tokens and epochs must be positive, encoder_lr_scale not negative")
    at_least = {
        "train.max_steps": (t.max_steps, 0, "0 (no limit) or a positive number of steps"),
        "train.eval_every": (t.eval_every, 0, "0 (once per epoch) or a positive number of steps"),
        "train.patience": (t.patience, 0, "0 (never stop early) or a positive number of evaluations"),
        "train.init_seed": (t.init_seed, 0, "0 (train.seed) or a positive seed"),
        "train.members": (t.members, 1, "at least 1 (1 = one model, no ensemble)"),
        "data.split_seed": (d.split_seed, 0, "0 (train.seed) or a positive seed"),
        "train.weight_decay": (t.weight_decay, 0, "a number at least 0"),
        "train.clip": (t.clip, 0, "a number at least 0 (0 = no clipping)"),
        "train.max_batch_size": (t.max_batch_size, 1, "at least 1"),
        "data.max_length": (d.max_length, 1, "at least 1 piece"),
        "tokenizer.max_chars": (recipe.tokenizer.max_chars, 0, "0 (no bound) or a positive number of characters"),
        "tune.trials": (u.trials, 1, "at least 1"),
        "tune.startup_trials": (u.startup_trials, 0, "0 or more trials"),
    }
    for key, (value, low, allowed) in at_least.items():
        if value < low:
            _refuse(key, value, allowed)
    if not 0 <= t.warmup < 1:
        _refuse("train.warmup", t.warmup, "a fraction of the run in [0, 1)")
    if parse_duration(t.max_time) == 0:
        _refuse("train.max_time", t.max_time, "a positive duration such as 20m (omit it for no limit)")
    if not 0 <= t.ema < 1:
        raise UsageError(f"train.ema: expected a decay in [0, 1) such as 0.999 (0 = off), got {t.ema}")
    dropouts = {f"encoder.{k}": getattr(c, k) for k in ("embed_dropout", "dropout", "weight_drop")}
    for f in dataclasses.fields(recipe.options):
        if f.name.endswith("dropout"):
            dropouts[f"{recipe.task}.{f.name}"] = getattr(recipe.options, f.name)
    for name, p in dropouts.items():
        if not 0 <= p < 1:
            raise UsageError(f"{name}: expected a probability in [0, 1), got {p}")
    if not 0 <= d.valid_fraction < 1:
        raise UsageError("data.valid_fraction: expected a number in [0, 1)")
    if recipe.tokenizer.vocab_size < 300:
        raise UsageError("tokenizer.vocab_size: must be at least 300 (256 byte pieces plus specials)")
    if recipe.init.recipe and recipe.init.checkpoint:
        raise UsageError(
            f"init: recipe {recipe.init.recipe!r} and checkpoint {recipe.init.checkpoint!r} both name where the "
            "weights start; keep one of them"
        )
    if parse_duration(u.trial_time, "tune.trial_time") == 0:
        _refuse("tune.trial_time", u.trial_time, "a positive duration such as 10m (empty: each trial runs its epochs)")


def parse_duration(text: str, what: str = "max-time") -> float | None:
    """'20m' → 1200.0, '1h30m' → 5400.0, '90' or '90s' → 90.0, '' → None; ``what`` names it in an error."""
    text = (text or "").strip().lower()
    if not text:
        return None
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text)
    if not m or not any(m.groups()):
        raise UsageError(f"{what} {text!r}: expected a duration such as 20m, 1h30m or 90s")
    h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mnt * 60 + s


def resolve_recipe(
    task: str,
    path: str | Path | None = None,
    overrides: list[str] | tuple = (),
    *,
    settings: dict[str, Any] | None = None,
    stored: dict | None = None,
    inherited: dict | None = None,
) -> Recipe:
    """The recipe of a run of ``task``: its module's options and defaults, then the layers of build_recipe."""
    from lstmtext.tasks import get_task

    mod = get_task(task)
    return build_recipe(task, mod.Options, mod.DEFAULTS, path, list(overrides), stored, inherited, settings)
