"""Config values the parser accepts but a run cannot use, and how to say so in one line."""

import importlib
import inspect
import traceback

from .errors import UserError

LINKS = {  # data attribute -> model argument, set by the CLI at instantiation
    "data.input_size": "model.init_args.layer.init_args.input_size",
    "data.output_size": "model.init_args.output_size",
    "data.seq_len": "model.init_args.seq_len",
}


class ConfigError(UserError, ValueError):
    """A config value the parser accepts but the run cannot use."""


def set_by_user(config, target: str) -> bool:
    """Whether the config gives `target` (a CLASS.init_args.NAME key) a value other than the
    class's default: what the CLI would silently replace by a linked value."""
    owner_key, name = target.rsplit(".init_args.", 1)
    owner = config.get(owner_key)
    class_path = getattr(owner, "class_path", None)
    value = owner.get("init_args", {}).get(name) if class_path else None
    if value is None:
        return False
    module, cls = class_path.rsplit(".", 1)
    signature = inspect.signature(getattr(importlib.import_module(module), cls))
    parameter = signature.parameters.get(name)
    default = getattr(parameter, "default", inspect.Parameter.empty)
    return default is inspect.Parameter.empty or value != default


def refused_value(error: BaseException) -> str:
    """'<Class>: <message>' of the innermost error that jsonargparse wrapped (without its
    Namespace dump), naming the outermost class whose __init__ was running."""
    while error.__cause__ is not None:
        error = error.__cause__
    classes = [
        type(frame.f_locals["self"]).__name__
        for frame, _ in traceback.walk_tb(error.__traceback__)
        if frame.f_code.co_name == "__init__" and "self" in frame.f_locals
    ]
    return f"{classes[0]}: {error}" if classes else str(error)
