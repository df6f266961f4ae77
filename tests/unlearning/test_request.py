"""Forget requests reach the right person: names are names, indices are indices, nothing guessed."""

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from qpae.unlearning.request import (
    ClassSelection,
    ForgetRequest,
    RequestError,
    plan_requests,
    selections_from_config,
)

NUMERIC = ["10", "2", "20", "30", "40", "50"]  # sorted as strings: index 1 is "2", index 2 is "20"
AUDIOMNIST = [f"{i:02d}" for i in range(1, 61)]
FSDD = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def resolve(class_names, **keys):
    [selection] = selections_from_config(**keys)
    return selection.resolve(class_names)


def test_a_digit_string_is_a_name_not_an_index():
    assert resolve(NUMERIC, forget=["2"]) == (1,)  # the class "2", not the class at index 2 ("20")
    assert resolve(NUMERIC, forget=["20"]) == (2,)


def test_leading_zeros_are_part_of_the_name():
    # Hydra reads forget=[01,07] as the strings '01' and '07': they are AudioMNIST's speakers 01 and 07
    assert resolve(AUDIOMNIST, forget=["01", "07"]) == (0, 6)
    parsed = OverridesParser.create().parse_override("forget=[01,07]").value()
    assert resolve(AUDIOMNIST, forget=parsed) == (0, 6)
    with pytest.raises(RequestError, match=r"Did you mean '01'"):
        resolve(AUDIOMNIST, forget=[1])  # an int from Python or YAML: never index 1 ("02")


def test_an_unquoted_number_that_could_mean_two_classes_is_refused_with_both_readings():
    with pytest.raises(RequestError) as err:
        resolve(NUMERIC, forget=[2])
    message = str(err.value)
    assert "ambiguous" in message and "'2' (index 1)" in message and "index 2 ('20')" in message
    assert "forget=['2']" in message and "forget_index=[2]" in message


def test_an_unquoted_number_that_names_a_class_unambiguously_is_that_name():
    librispeech = ["1688", "1998", "2033"]
    assert resolve(librispeech, forget=[1998]) == (1,)  # index 1998 does not exist: only one reading


def test_make_quotes_forget_so_0_is_the_name_0_with_a_hint_to_the_index():
    # make unlearn FORGET=0 passes forget=['0']: not a name of FSDD's, and never index 0
    with pytest.raises(RequestError, match=r"unknown class '0'.*FORGET_INDEX=0 with make"):
        resolve(FSDD, forget=["0"])


def test_a_number_that_is_no_name_is_not_silently_an_index():
    with pytest.raises(RequestError, match=r"unknown class '0'.*forget_index=\[0\]"):
        resolve(FSDD, forget=[0])
    with pytest.raises(RequestError, match="unknown class '1'"):
        resolve(AUDIOMNIST, forget=[1])  # not "02", which index 1 is


def test_indices_are_explicit():
    assert resolve(FSDD, forget_index=[0, 4]) == (0, 4)
    assert resolve(NUMERIC, forget_index=[2]) == (2,)
    with pytest.raises(RequestError, match="out of range 0..5"):
        resolve(FSDD, forget_index=[6])
    with pytest.raises(RequestError, match="whole number"):
        resolve(FSDD, forget_index=["theo"])


def test_names_are_matched_after_normalisation():
    assert resolve(FSDD, forget=[" theo "]) == (4,)
    assert resolve(["a b", "c"], forget=["a  b"]) == (0,)


def test_class_names_that_differ_only_in_spacing_are_never_guessed_between():
    with pytest.raises(RequestError, match="differ only in spacing"):
        resolve(["george", "george "], forget=["george"])


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"forget": [1.5]}, "must be text, got the number 1.5"),
        ({"forget": [True]}, "must be text, got the boolean True"),
        ({"forget_index": [True]}, "whole number, got the boolean True"),
        ({"forget_index": [1.5]}, "whole number, got the number 1.5"),
        ({"forget": []}, "forget is empty"),
        ({"requests": []}, "requests is empty"),
        ({"requests_index": [[0], []]}, "request 2 of requests_index is empty"),
        ({}, "nothing to forget"),
        ({"forget": ["theo"], "forget_index": [0]}, "only one of forget, forget_index"),
        ({"forget": [None]}, "must be text"),
        ({"forget": ["theo", "theo"]}, "same class twice"),
    ],
)
def test_bad_requests_are_clear_errors(keys, message):
    with pytest.raises(RequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        selections = selections_from_config(**keys)
        for s in selections:
            s.resolve(FSDD)


def test_a_single_name_without_brackets_is_one_name():
    assert resolve(FSDD, forget="theo") == (4,)
    assert resolve(FSDD, forget_index=3) == (3,)


def test_a_sequence_is_checked_whole_before_the_first_request():
    selections = selections_from_config(requests_index=[[0], [99]])
    with pytest.raises(RequestError, match="request 2 of 2"):
        plan_requests(selections, FSDD)
    selections = selections_from_config(requests=[["theo"], ["lucas"], ["theo"]])
    with pytest.raises(RequestError, match="request 3 of 3.*already forgotten"):
        plan_requests(selections, FSDD)
    selections = selections_from_config(
        requests=[["george", "jackson", "lucas"], ["nicolas", "theo", "yweweler"]]
    )
    with pytest.raises(RequestError, match="every class"):
        plan_requests(selections, FSDD)


def test_a_planned_sequence_carries_what_was_forgotten_before():
    requests = plan_requests(
        selections_from_config(requests=[["theo"], ["lucas"]]), FSDD, previously_forgotten=[0]
    )
    assert [r.forget_classes for r in requests] == [(4,), (2,)]
    assert [r.previously_forgotten for r in requests] == [(0,), (0, 4)]
    assert requests[-1].all_forgotten == (0, 2, 4)


def test_forget_request_refuses_non_integer_classes():
    with pytest.raises(RequestError, match="whole numbers"):
        ForgetRequest((True,), 6)
    assert ClassSelection(indices=(1,)).describe() == "forget_index=[1]"
