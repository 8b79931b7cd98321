"""`pipelines.train`'s flags, generated from `RecipeConfig`'s fields (one source).

Each flag is a field of `RecipeConfig` or of its nested `SamplingConfig` / `TowerConfig`
with its help and allowed values (`tfrecall.config.option` metadata): an enum for a field
with choices, a list for a tuple, else the default's type. Bad values fail at flag parsing
(enums) or at `RecipeConfig` construction, both before any data is read.
"""

from __future__ import annotations

from absl import flags

from tfrecall.recipe.config import RECIPE_HELP, UNSET_NEGATIVES_HELP, RecipeConfig, flat_fields


def define_recipe_flags(flag_values=flags.FLAGS) -> list:
    """Defines a flag per settable field; returns their names."""
    defaults = RecipeConfig().flat()
    for name, field in flat_fields().items():
        meta = field.metadata
        text = meta["help"]
        default = defaults[name]
        if name in UNSET_NEGATIVES_HELP:  # unset: the recipe's default for the view
            text, default = f"{text} {UNSET_NEGATIVES_HELP[name]}", None
        if name in RECIPE_HELP:
            text = f"{text} {RECIPE_HELP[name]}"
        kind = meta["type"] or type(default)
        kw = {"flag_values": flag_values}
        if meta["choices"] is not None:
            flags.DEFINE_enum(name, str(default), [str(c) for c in meta["choices"]], text, **kw)
        elif meta["item"] is not None:
            flags.DEFINE_list(name, [str(v) for v in default], text, **kw)
        elif kind is bool:
            flags.DEFINE_boolean(name, default, text, **kw)
        elif kind is int:
            flags.DEFINE_integer(name, default, text, **kw)
        elif kind is float:
            flags.DEFINE_float(name, default, text, **kw)
        else:
            flags.DEFINE_string(name, default, text, **kw)
    return list(flat_fields())


def config_from_flags(flag_values=flags.FLAGS, **replace) -> RecipeConfig:
    """The `RecipeConfig` of the parsed flags (`replace`: values that win over them)."""
    values = {}
    for name, field in flat_fields().items():
        meta = field.metadata
        value = flag_values[name].value
        if meta["choices"] is not None:  # enum flags hold text: back to the choice itself
            value = next(c for c in meta["choices"] if str(c) == value)
        elif meta["item"] is not None:
            value = tuple(meta["item"](v) for v in value)
        values[name] = value
    values.update(replace)
    return RecipeConfig.from_flat(**values)
