"""`wave-lightning`: one command over fit (and validate, test, predict), sweep and analyze.

Each subcommand imports only what it needs, so `wave-lightning --help` answers at once. A
mistake in what the user gave (any `UserError`) ends every subcommand the same way: one
`error:` line, exit status 1 (a traceback with WAVE_LIGHTNING_DEBUG=1).
"""

import sys

from .run.errors import UserError, exit_with

SUBCOMMANDS = {
    "fit": "train a model from LightningCLI configs, test its best checkpoint",
    "validate": "evaluate a checkpoint on the validation set",
    "test": "evaluate a checkpoint on the test set",
    "predict": "run a checkpoint on the prediction set",
    "sweep": "Optuna sweeps: run, worker, status, report, dashboard FILE",
    "analyze": "wave measures and plots of a trained checkpoint (--ckpt PATH)",
}


def usage() -> str:
    """The top-level help: every subcommand with one line."""
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items()]
    return "\n".join(
        [
            "usage: wave-lightning {" + ",".join(SUBCOMMANDS) + "} ...",
            "",
            "Train, sweep and analyse wave-based recurrent networks.",
            "",
            "subcommands:",
            *lines,
            "",
            "`wave-lightning SUBCOMMAND --help` shows a subcommand's options.",
        ]
    )


def dispatch(argv: list[str], from_command_line: bool) -> None:
    """Run the subcommand that argv names (fit's LightningCLI for the four Lightning ones, which
    reads the command line itself when that is where argv came from)."""
    if argv[0] == "fit":
        from .run.signals import Signals

        Signals.begin()  # before the slow imports: a stop signal now stops after a step
    from .run.noise import quiet_known_noise

    quiet_known_noise()
    if argv[0] == "sweep":
        from .sweep import cli as sweep

        sweep.main(argv[1:])
    elif argv[0] == "analyze":
        from .analysis import cli as analysis

        analysis.main(argv[1:])
    else:
        from . import fit

        fit.main(None if from_command_line else argv)


def main(args: list[str] | None = None) -> None:
    """Entry point of `wave-lightning`."""
    argv = sys.argv[1:] if args is None else list(args)
    if not argv:
        sys.exit(usage())
    if argv[0] in ("-h", "--help"):
        print(usage())
        return
    try:
        dispatch(argv, from_command_line=args is None)
    except UserError as error:
        exit_with(error)
