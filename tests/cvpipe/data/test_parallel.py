"""parallel_map on a Dask cluster: same order, same errors as the thread pool; when a set goes there."""

from __future__ import annotations

import functools
import operator

import pytest

from cvpipe.core.errors import DataError, ParamsError
from cvpipe.data.manifest import parallel_map
from cvpipe.data.parallel import DaskPool, DaskSettings, open_workers
from cvpipe.data.files import require_dir


@pytest.fixture(scope="module")
def pool():
    """Two worker processes on the loopback, every set sent to them (``min_items`` 0)."""
    pool = DaskPool(DaskSettings(workers=2, min_items=0), threads=2)
    yield pool
    pool.close()


def test_results_come_back_in_order(pool):
    items = list(range(1000))
    assert list(parallel_map(operator.neg, items, "neg", pool, chunk=7)) == [-x for x in items]
    assert pool._client is not None  # it really went to the cluster


def test_an_error_on_a_worker_is_the_thread_pools_error(pool, tmp_path):
    folders = [tmp_path] * 50 + [tmp_path / "missing"] + [tmp_path] * 50
    check = functools.partial(require_dir, what="sample folder")  # a DataError naming the folder
    with pytest.raises(DataError) as on_threads:
        list(parallel_map(check, folders, "dirs", 2, chunk=4))
    with pytest.raises(DataError) as on_dask:
        list(parallel_map(check, folders, "dirs", pool, chunk=4))
    assert str(on_dask.value) == str(on_threads.value)
    assert (on_dask.value.path, on_dask.value.line) == (on_threads.value.path, on_threads.value.line) == (tmp_path / "missing", None)
    assert "raised on a Dask worker" in "".join(on_dask.value.__notes__)


def test_a_builtin_error_keeps_its_type(pool):
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        list(parallel_map(functools.partial(operator.truediv, 1), [1, 2, 0, 4], "div", pool, chunk=1))


def test_small_sets_stay_on_threads():
    pool = DaskPool(DaskSettings(min_items=100), threads=2)
    assert list(parallel_map(operator.neg, range(99), "neg", pool)) == [-x for x in range(99)]
    assert pool._client is None and not pool.takes(0) and pool.takes(100)


def test_settings_from_params():
    assert DaskSettings.from_params({}) == DaskSettings(min_items=None)
    s = DaskSettings.from_params({"dask": {"address": "tcp://10.0.0.1:8786", "min_items": 10}})
    assert (s.address, s.min_items, s.workers) == ("tcp://10.0.0.1:8786", 10, 2)
    with open_workers(DaskSettings(), threads=3) as workers:
        assert workers == 3  # no min_items: plain threads, as before
    with pytest.raises(ParamsError, match=r"dask\.address"):
        DaskSettings.from_params({"dask": {"address": "10.0.0.1"}})
    with pytest.raises(ParamsError, match=r"dask"):
        DaskSettings.from_params({"dask": {"n_workers": 2}})


def test_a_scheduler_address_is_used_as_it_is_and_left_running():
    """``dask.address``: the stage connects to a running scheduler (here one started by the test) and closes
    only its own connection; the cluster goes on serving others."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        pool = DaskPool(DaskSettings(address=cluster.scheduler_address, min_items=0), threads=2)
        assert list(parallel_map(operator.neg, list(range(50)), "neg", pool, chunk=5)) == [-x for x in range(50)]
        assert pool._client.scheduler.address == cluster.scheduler_address and pool._cluster is None
        pool.close()
        with Client(cluster.scheduler_address) as other:  # still up after the stage closed its client
            assert other.submit(operator.neg, 3).result() == -3


class CountingPool:
    """A WorkPool that runs the chunks here and records their sizes."""

    threads = 2

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def takes(self, n_items: int) -> bool:
        return True

    def map_chunks(self, fn, chunks):
        for c in chunks:
            self.sizes.append(len(c))
            yield [fn(x) for x in c]


def test_a_large_set_goes_to_a_pool_in_a_bounded_number_of_tasks():
    """A Dask task costs milliseconds of scheduling: 90,000 small images went as 2,813 tasks of 32 (ingest 14x
    slower than threads on 2 cores); now in at most POOL_TASKS chunks, in the same order."""
    from cvpipe.data.manifest import POOL_TASKS

    pool = CountingPool()
    items = list(range(90_000))
    assert list(parallel_map(operator.neg, items, "neg", pool, chunk=32)) == [-x for x in items]
    assert len(pool.sizes) <= POOL_TASKS and sum(pool.sizes) == 90_000
    small = CountingPool()
    assert list(parallel_map(operator.neg, items[:100], "neg", small, chunk=32)) == [-x for x in items[:100]]
    assert small.sizes == [32, 32, 32, 4]  # a small set keeps the chunk asked for
