"""A trial's run learns which sweep trial it is from the environment its worker gives it."""

from wave_lightning.run.trial import TrialIdentity, current_trial, trial_environment


def test_a_run_reads_the_trial_its_worker_names(monkeypatch):
    env = trial_environment("copy-ablation", 7, {"model": "wrnn", "seed": 2, "lr": 1e-3})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert current_trial() == TrialIdentity(
        "copy-ablation", 7, {"lr": 1e-3, "model": "wrnn", "seed": 2}
    )


def test_outside_a_sweep_a_run_is_no_trial(monkeypatch):
    for name in trial_environment("s", 0, {}):
        monkeypatch.delenv(name, raising=False)
    assert current_trial() is None
