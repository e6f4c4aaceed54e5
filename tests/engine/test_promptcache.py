"""engine/promptcache.py: which saved prompt serves a request, what stays within the budget."""

from __future__ import annotations

from ollamacli.engine.promptcache import PromptCache, SavedPrompt, common_prefix


def saved(tokens: list[int], size: int = 10) -> SavedPrompt:
    return SavedPrompt(tokens, state=bytes(size), size=size)


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5], [6]) == 0


def test_the_longest_shared_beginning_wins() -> None:
    cache = PromptCache(budget=100)
    short, long = saved([1, 2, 3, 9]), saved([1, 2, 3, 4, 5, 8])
    cache.add(short)
    cache.add(long)
    assert cache.best([1, 2, 3, 4, 5, 6]) == (long, 5)
    assert cache.best([1, 2, 3, 9, 9]) == (short, 4)
    assert cache.best([7]) == (None, 0)


def test_an_entry_that_another_extends_is_dropped() -> None:
    cache = PromptCache(budget=100)
    cache.add(saved([1, 2, 3]))
    cache.add(saved([1, 2, 3, 4, 5]))
    assert len(cache) == 1
    assert cache.used == 10
    assert cache.covers([1, 2, 3, 4], slack=0)
    assert not cache.covers([1, 2, 3, 4, 5, 6, 7], slack=1)
    assert cache.covers([1, 2, 3, 4, 5, 6, 7], slack=2)


def test_the_least_recently_used_go_first_and_the_budget_holds() -> None:
    cache = PromptCache(budget=30)
    first, second, third = saved([1]), saved([2]), saved([3])
    for entry in (first, second, third):
        assert cache.add(entry)
    cache.use(first)  # now second is the oldest
    assert cache.add(saved([4]))
    assert cache.used == 30
    assert cache.best([2]) == (None, 0)
    assert cache.best([1])[0] is first
    assert not cache.add(saved([5], size=31))  # larger than the whole budget: not kept
    assert cache.used == 30
