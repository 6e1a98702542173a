"""The recurrences themselves: the per-step reference and its fast forms (eager, C++, Triton).

The layer classes in wave_lightning.nn pick a form by their `impl`; every fast form is tested
against `reference.reference_recurrence` in values and gradients.
"""
