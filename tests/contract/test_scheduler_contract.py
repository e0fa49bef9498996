"""The Scheduler contract: every backend passes the same suite.

What the dispatcher relies on, observed at the handler: a delivery arrives at least once,
never before its due time; scheduling one twice (or again after it arrived) does not make
a second arrival; deliveries differing in any field are each delivered; a delay longer
than the queue allows arrives early and is completed by the dispatcher's next hop; a
failure that may pass is a ``TransientError``, so the caller's delivery is retried.
"""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from refluxo.errors import TransientError
from refluxo.runtime.links import child_run_id
from refluxo.runtime.ports import Delivery, Scheduler
from tests.contract.scheduler_backends import SchedulerUnderTest


def test_it_is_a_scheduler(scheduler: SchedulerUnderTest) -> None:
    assert isinstance(scheduler.scheduler, Scheduler)


def test_the_same_delivery_scheduled_twice_arrives_once(
    scheduler: SchedulerUnderTest, run_id: str
) -> None:
    delivery = Delivery(run_id, 1)
    scheduler.scheduler.schedule(delivery)
    scheduler.scheduler.schedule(delivery)
    scheduler.scheduler.schedule(Delivery(run_id, 1))  # an equal value: the same delivery
    scheduler.wait_for(1)
    arrivals = scheduler.pass_time_to(scheduler.now() + scheduler.settle_ms)
    assert {arrival.delivery for arrival in arrivals} == {delivery}
    assert {arrival.name for arrival in arrivals} == {delivery.name}
    if scheduler.deduplicates:
        assert len(arrivals) == 1


def test_a_delivery_scheduled_again_after_it_arrived_arrives_at_most_once_more(
    scheduler: SchedulerUnderTest, run_id: str
) -> None:
    delivery = Delivery(run_id, 1)
    scheduler.scheduler.schedule(delivery)
    scheduler.wait_for(1)
    scheduler.scheduler.schedule(delivery)  # a duplicate, e.g. from a stale delivery
    arrivals = scheduler.pass_time_to(scheduler.now() + scheduler.settle_ms)
    # At most once more (Cloud Tasks: a finished task's name is a tombstone, so the
    # delivery is created again under its next generation rather than silently dropped).
    assert {arrival.delivery for arrival in arrivals} == {delivery}
    if scheduler.deduplicates:
        assert 1 <= len(arrivals) <= 2


def test_deliveries_differing_in_run_version_due_time_or_hop_each_arrive_once(
    scheduler: SchedulerUnderTest, run_id: str
) -> None:
    now = scheduler.now()
    distinct = [
        Delivery(run_id, 1),
        Delivery(run_id, 2),
        Delivery(run_id, 1, due_at=now - 1_000),
        Delivery(run_id, 1, due_at=0, hop=1),
        Delivery(f"{run_id}-other", 1),
    ]
    assert len({delivery.name for delivery in distinct}) == len(distinct)
    for delivery in distinct:
        scheduler.scheduler.schedule(delivery)
    scheduler.wait_for(len(distinct))
    arrivals = scheduler.pass_time_to(scheduler.now() + scheduler.settle_ms)
    assert Counter(arrival.delivery for arrival in arrivals) == Counter(distinct)
    assert all(arrival.name == arrival.delivery.name for arrival in arrivals)


def test_a_maps_burst_of_deliveries_scheduled_from_many_threads_each_arrive_once(
    scheduler: SchedulerUnderTest, run_id: str
) -> None:
    """What a ``map`` makes at once: its children's first steps and their reports to the
    parent, scheduled by several workers together, each scheduled twice (a redelivered
    report schedules again)."""
    parent = Delivery(run_id, 3)
    firsts = [Delivery(child_run_id(run_id, 2, index), 0) for index in range(40)]
    reports = [Delivery(child_run_id(run_id, 2, index), 4) for index in range(40)]
    burst = [parent, *firsts, *reports]

    def schedule_all(part: list[Delivery]) -> None:
        for delivery in part:
            scheduler.scheduler.schedule(delivery)
            scheduler.scheduler.schedule(delivery)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(schedule_all, [burst[offset::4] for offset in range(4)]))
    scheduler.wait_for(len(burst))
    arrivals = scheduler.pass_time_to(scheduler.now() + scheduler.settle_ms)
    assert set(Counter(arrival.delivery for arrival in arrivals)) == set(burst)
    if scheduler.deduplicates:
        assert Counter(arrival.delivery for arrival in arrivals) == Counter(burst)


def test_a_future_delivery_does_not_arrive_before_its_due_time(
    scheduler: SchedulerUnderTest, run_id: str
) -> None:
    now = scheduler.now()
    sooner = Delivery(run_id, 1, due_at=now + scheduler.near_ms // 2)
    later = Delivery(run_id, 2, due_at=now + scheduler.near_ms)
    scheduler.scheduler.schedule(later)
    scheduler.scheduler.schedule(sooner)
    scheduler.pass_time_to(sooner.due_at - 1)
    scheduler.wait_for(1)
    scheduler.pass_time_to(later.due_at - 1)
    arrivals = scheduler.wait_for(2)
    assert [arrival.delivery for arrival in arrivals] == [sooner, later]
    for arrival in arrivals:
        assert arrival.at >= arrival.delivery.due_at, f"{arrival} arrived early"


def test_a_delay_beyond_the_queue_maximum_is_chained_by_the_next_hops(
    scheduler: SchedulerUnderTest, run_id: str
) -> None:
    """What the dispatcher does with an early arrival: schedule the same due time, next hop."""
    due_at = scheduler.now() + scheduler.far_ms
    scheduler.scheduler.schedule(Delivery(run_id, 1, due_at=due_at))
    hop = 0
    while True:
        arrival = scheduler.wait_for(hop + 1)[-1]
        assert arrival.delivery == Delivery(run_id, 1, due_at=due_at, hop=hop)
        if arrival.at >= due_at:
            break
        hop += 1
        assert hop <= 10, "the chain does not end"
        scheduler.scheduler.schedule(Delivery(run_id, 1, due_at=due_at, hop=hop))
    if scheduler.max_delay_ms is None:
        assert hop == 0  # no maximum: delivered in one piece
    else:
        # Each link covers at most the maximum delay, so there are at least this many.
        assert hop + 1 >= math.ceil(scheduler.far_ms / scheduler.max_delay_ms)


def test_a_delivery_whose_handler_fails_arrives_again(
    scheduler: SchedulerUnderTest, run_id: str
) -> None:
    delivery = Delivery(run_id, 1)
    scheduler.fail_next(delivery, times=2)
    scheduler.scheduler.schedule(delivery)
    scheduler.wait_for(3)
    arrivals = scheduler.pass_time_to(scheduler.now() + scheduler.settle_ms)
    assert [arrival.delivery for arrival in arrivals] == [delivery] * 3
    assert arrivals[0].at <= arrivals[1].at <= arrivals[2].at


def test_a_failure_that_may_pass_is_a_transient_error(
    fallible_scheduler: SchedulerUnderTest, run_id: str
) -> None:
    delivery = Delivery(run_id, 1)
    assert fallible_scheduler.unavailable is not None
    with fallible_scheduler.unavailable(), pytest.raises(TransientError):
        fallible_scheduler.scheduler.schedule(delivery)
    fallible_scheduler.scheduler.schedule(delivery)  # once it passed, as if never tried
    fallible_scheduler.wait_for(1)
    arrivals = fallible_scheduler.pass_time_to(
        fallible_scheduler.now() + fallible_scheduler.settle_ms
    )
    assert [arrival.delivery for arrival in arrivals] == [delivery]
