"""Config values the parser accepts but a run cannot use, and how to say so in one line."""

import difflib
import importlib
import inspect
import re
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


STRUCTURE = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value")
CLASS_LINE = re.compile(r"Problem with given class_path '([^']+)'")
KEY_LINE = re.compile(r'Parser key "([^"]+)"')
UNKNOWN_OPTION = re.compile(r"Option '([^']+)' is not accepted")
UNRECOGNIZED = re.compile(r"unrecognized arguments: (.+)", re.IGNORECASE)


def suggestion(given: str, allowed: list[str]) -> str:
    """' (did you mean X?)' for the allowed name closest to a misspelt one, else ''."""
    close = difflib.get_close_matches(given, allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def refused_arguments(text: str, known: list[str]) -> str | None:
    """'unrecognized arguments: --x 3' as one line with the closest known option; None when
    `text` is about something else."""
    match = UNRECOGNIZED.match(text.strip())
    if match is None:
        return None
    given = match.group(1).split()[0].split("=", 1)[0]
    return f"{given} is not an option{suggestion(given, known)}; see --help"


def parser_reason(text: str) -> str:
    """jsonargparse's nested error as one line: '<Class>: <key>: <innermost problem>', with
    the options a class takes when the problem is an option it does not."""
    lines = [line.strip().removeprefix("- ") for line in text.splitlines() if line.strip()]
    class_path, key = "", ""
    for line in lines:
        if CLASS_LINE.match(line):
            class_path, key = CLASS_LINE.match(line).group(1), ""
        elif KEY_LINE.match(line):
            key = KEY_LINE.match(line).group(1) + ": "
        elif not line.startswith(STRUCTURE) and line != "Expected a <class 'NoneType'>":
            if not class_path:
                return line
            unknown = UNKNOWN_OPTION.match(line)
            if unknown:
                taken = options(class_path)
                line += suggestion(unknown.group(1), taken)
                line += f"; {class_path.rsplit('.', 1)[-1]} takes {', '.join(taken)}"
            return f"{class_path.rsplit('.', 1)[-1]}: {key}{line}"
    return " ".join(lines)


def options(class_path: str) -> list[str]:
    """The keyword arguments of the class at `class_path`, those its **kwargs pass on included."""
    module, name = class_path.rsplit(".", 1)
    names: list[str] = []
    for cls in getattr(importlib.import_module(module), name).__mro__:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(names))
