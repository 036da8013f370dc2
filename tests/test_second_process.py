"""reconcile.second_process: calls run in a new interpreter, answered in order, errors raised here."""

from __future__ import annotations

import operator
import pickle
import threading
import os
import sys

import polars as pl
import pytest

from reconcile.second_process import SecondProcess


@pytest.mark.parametrize(("calls", "expected"), [
    ([(operator.add, (2, 3), {})], [5]),
    ([(divmod, (17, 5), {}), (pow, (2, 10), {})], [(3, 2), 1024]),
    ([(len, (pl.DataFrame({"a": [1, 2, 3]}),), {})], [3]),
    ([(os.getpid, (), {})], None),  # another process: checked below
    ([], []),
])
def test_results_in_order(calls, expected):
    with SecondProcess(calls) as there:
        got = there.results()
    if expected is None:
        assert got[0] != os.getpid()
    else:
        assert got == expected


@pytest.mark.parametrize(("call", "error"), [
    ((int, ("not a number",), {}), ValueError),
    ((operator.truediv, (1, 0), {}), ZeroDivisionError),
    ((sys.exit, (3,), {}), SystemExit),
])
def test_a_failing_call_raises_here(call, error):
    with SecondProcess([call]) as there, pytest.raises(error):
        there.results()


def test_a_child_that_dies_without_answering():
    with SecondProcess([(os._exit, (7,), {})]) as there, pytest.raises(ChildProcessError, match="exit status 7"):
        there.results()


def test_read_only_mappings_cross_and_stay_read_only():
    from types import MappingProxyType

    from reconcile.second_process import start

    got = start(dict, MappingProxyType({"a": 1})).result()
    assert got == {"a": 1}
    proxy = start(operator.itemgetter(0), [MappingProxyType({"b": 2})]).result()
    assert isinstance(proxy, MappingProxyType) and proxy == {"b": 2}


def test_pending_cancel_stops_the_child():
    import time

    from reconcile.second_process import start

    pending = start(time.sleep, 60)
    t0 = time.monotonic()
    pending.cancel()
    assert time.monotonic() - t0 < 10


def test_a_call_or_a_result_that_does_not_pickle_is_an_error_here():
    from reconcile.second_process import start

    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        start(lambda: 1).result()  # a lambda cannot be named in a pickle
    with pytest.raises(RuntimeError, match="could not send back a result"):
        start(threading.Lock).result()


def test_a_big_frame_goes_and_comes_back_whole():
    from reconcile.second_process import start

    frame = pl.DataFrame({"n": range(2_000_000), "t": [f"第{i}行" for i in range(2_000_000)]})
    assert start(pl.DataFrame.reverse, frame).result().equals(frame.reverse())


def test_answers_are_taken_as_they_come_while_the_parent_is_busy(tmp_path):
    """The child answers each call when done (a file handed over) and a thread here takes
    it: a first answer larger than any pipe holds does not keep the child from its next call
    while this process has not asked for the results."""
    import time
    from pathlib import Path

    marker = tmp_path / "second call ran"
    with SecondProcess([(bytes, (10_000_000,), {}), (Path.touch, (marker,), {})]) as there:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the child waited for the parent to read its first answer"
        first, _ = there.results()
    assert len(first) == 10_000_000


def test_an_error_after_answered_calls_is_raised_here():
    with SecondProcess([(operator.add, (1, 2), {}), (int, ("x",), {}), (operator.add, (3, 4), {})]) as there:
        with pytest.raises(ValueError):
            there.results()
