"""The ground floor: what one run needs around Lightning and what every floor above shares.

The run folder (`folder.RunFolder`), safe checkpoint loading, preemption, loggers, console
lines, device and config checks, and the base class of every error the user caused.
"""
