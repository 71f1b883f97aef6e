"""The non-finite episode state machine: when the checks run, which event a check becomes."""
import pytest

from dsnotebook.dataflow.episodes import NonFiniteEpisodes


def test_cheap_arms_after_bad_statistics_and_reports_once():
    ep = NonFiniteEpisodes("cheap", arm_steps=3)
    assert not ep.wants_checks()
    ep.saw_statistics(5, nonfinite=True, checking=False)
    assert ep.wants_checks() and ep.trigger_step == 5
    assert ep.checked(6, "fc", "forward: bad") .detail.endswith("(checks armed after non-finite statistics at step 5)")
    assert not ep.wants_checks()
    ep.saw_statistics(7, nonfinite=True, checking=False)  # same episode: no re-arming, no second event
    assert not ep.wants_checks()
    ep.saw_statistics(8, nonfinite=False, checking=False)  # a clean step ends the episode
    ep.saw_statistics(9, nonfinite=True, checking=False)
    assert ep.wants_checks()


def test_cheap_says_so_when_the_checks_see_nothing():
    ep = NonFiniteEpisodes("cheap", arm_steps=2)
    ep.saw_statistics(1, True, False)
    assert ep.checked(2, None, None) is None
    ev = ep.checked(3, None, None)
    assert ev.module is None and "did not repeat" in ev.detail and not ep.wants_checks()


def test_replay_finding_closes_the_episode():
    ep = NonFiniteEpisodes("cheap")
    ep.saw_statistics(4, True, False)
    ev = ep.found_by_replay(4, "conv", "backward: x")
    assert ev.step == 4 and "replaying" in ev.detail and not ep.wants_checks()
    assert ep.found_by_replay(5, "conv", "backward: x") is None


def test_strict_checks_every_step_and_reports_each_new_episode():
    ep = NonFiniteEpisodes("strict")
    assert ep.wants_checks()
    assert ep.checked(0, "a", "forward") is not None
    assert ep.checked(1, "a", "forward") is None  # the same episode
    assert ep.checked(2, None, None) is None  # clean: the episode ends
    assert ep.checked(3, "b", "backward").module == "b"


def test_bad_mode():
    with pytest.raises(ValueError, match="nonfinite"):
        NonFiniteEpisodes("sometimes")
