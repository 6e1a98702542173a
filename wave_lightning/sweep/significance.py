"""Statistics of an ablation: intervals over seeds, and every factor level against a reference
level, paired by seed (two runs of one seed differ only in that factor).

Intervals are Student-t 95% intervals of a mean; a level's comparison is a paired t-test of its
differences to the reference level (scipy.stats.ttest_1samp of the differences against 0), with
the effect size d_z = mean difference / standard deviation of the differences.
"""

import math
import statistics
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95
TEST_NAME = "paired t-test over seeds"


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and 95% interval of n values (no spread for n = 1)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


def summarize(values: list[float]) -> Summary:
    """The Summary of `values` (at least one)."""
    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return Summary(n, mean, None, None, None)
    std = statistics.stdev(values)
    half = stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """A level against the reference level of its factor: the paired differences (level minus
    reference), their mean, interval, p-value and d_z; `note` says why a test is missing."""

    factor: str
    level: object
    reference: object
    difference: Summary | None
    p_value: float | None
    effect: float | None
    note: str = ""


def compare(factor: str, level: object, reference: object, pairs: list[tuple]) -> Comparison:
    """Compare `level` with `reference` from (level value, reference value) pairs."""
    if len(pairs) < 2:
        note = f"{len(pairs)} pair(s): too few seeds to test"
        return Comparison(factor, level, reference, None, None, None, note)
    differences = [a - b for a, b in pairs]
    summary = summarize(differences)
    if summary.std == 0:
        note = "the same difference in every pair: no spread to test"
        return Comparison(factor, level, reference, summary, None, None, note)
    p_value = float(stats.ttest_1samp(differences, 0.0).pvalue)
    return Comparison(factor, level, reference, summary, p_value, summary.mean / summary.std)


def paired(
    groups: dict[tuple, dict[int, float]], index: int, level: object, reference: object
) -> list[tuple[float, float]]:
    """(value at `level`, value at `reference`) for every seed and every combination of the
    other factors' levels that ran both. `groups` maps factor levels to {seed: value}."""
    pairs = []
    for key, by_seed in groups.items():
        if key[index] != level:
            continue
        twin = groups.get((*key[:index], reference, *key[index + 1 :]), {})
        pairs += [(by_seed[seed], twin[seed]) for seed in sorted(by_seed) if seed in twin]
    return pairs
