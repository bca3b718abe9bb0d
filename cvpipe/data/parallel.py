"""Where per-image work runs on large sets: a Dask cluster (``dask`` in params.yaml), else threads here.

:func:`cvpipe.data.manifest.parallel_map` is the one place that spreads work; given a :class:`DaskPool`
instead of a thread count, it sends a set of ``dask.min_items`` items or more to Dask in chunks.
The cluster is a local one of worker processes, started on first use and closed by the stage, or the
scheduler at ``dask.address``, whose workers must import this project and see the same paths (a
shared file system): they read and write the stage's files themselves. Outputs are the same bytes
whichever runs the work (tests/stages/test_dask.py), so ``dask`` is no stage's parameter in dvc.yaml.
"""

from __future__ import annotations

import logging
import pickle
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvpipe.core.errors import ParamsError
from cvpipe.core.params import DEFAULT_PARAMS, check_keys, load_params, mapping, number

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)
DASK_KEYS = ("address", "workers", "threads_per_worker", "min_items")


@dataclass(frozen=True)
class DaskSettings:
    """params.yaml ``dask``. ``min_items`` None (or no section): never Dask, threads as before."""

    address: str | None = None  # a running scheduler (tcp://host:8786); None: a local cluster
    workers: int = 2  # processes of the local cluster
    threads_per_worker: int = 1
    min_items: int | None = None  # smaller sets stay on threads: starting a cluster costs about a second

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DaskSettings:
        """The checked ``dask`` section; a missing section turns Dask off."""
        d = mapping(params.get("dask", {}), "dask")
        check_keys(d, DASK_KEYS, "dask")
        address = d.get("address")
        if address is not None and (not isinstance(address, str) or "://" not in address):
            raise ParamsError("dask.address", f"is {address!r}; give a scheduler address (tcp://host:8786) or null")
        min_items = d.get("min_items")
        return cls(
            address=address,
            workers=number(d.get("workers", 2), "dask.workers", integer=True, minimum=1),
            threads_per_worker=number(d.get("threads_per_worker", 1), "dask.threads_per_worker", integer=True, minimum=1),
            min_items=None if min_items is None else number(min_items, "dask.min_items", integer=True, minimum=0),
        )


def read_settings(params_file: Path | None) -> DaskSettings:
    """``dask`` of ``params_file``; without one, of ./params.yaml where there is one (ingest and
    convert also run on their own, outside a project), else Dask off."""
    if params_file is None and not DEFAULT_PARAMS.is_file():
        return DaskSettings()
    return DaskSettings.from_params(load_params(params_file or DEFAULT_PARAMS))


class DaskPool:
    """A Dask client for sets of ``settings.min_items`` items or more; smaller ones run on ``threads``
    threads here. The client (a local cluster, or the scheduler at ``settings.address``) starts on
    first use, so a stage whose sets are all small never starts one. ``client``: one already open
    (a Prefect flow's cluster), used as it is and left open."""

    def __init__(self, settings: DaskSettings, threads: int | None = None, client: Client | None = None) -> None:
        self.settings, self.threads = settings, threads
        self._client, self._owned, self._cluster = client, client is None, None

    def takes(self, n_items: int) -> bool:
        """Whether a set of ``n_items`` goes to Dask."""
        return self.settings.min_items is not None and n_items > 0 and n_items >= self.settings.min_items

    def client(self) -> Client:
        if self._client is None:
            from distributed import Client, LocalCluster

            s = self.settings
            if s.address is None and _in_dask_worker():
                # a stage run by the flow's Dask task runner: its cluster takes the per-image work too (a
                # worker's processes may not start a cluster of their own), while this task waits aside
                from distributed import get_client, secede

                self._client, self._owned = get_client(), False
                secede()
                self._seceded = True
                log.info("dask: the cluster of the Dask worker running this stage")
            elif s.address is not None:
                self._client = Client(s.address)
                log.info("dask: scheduler %s, %d workers", s.address, len(self._client.nthreads()))
            else:
                # workers inherit sys.path (spawned processes), so they import this very checkout
                self._cluster = LocalCluster(n_workers=s.workers, threads_per_worker=s.threads_per_worker, processes=True,
                                             host="127.0.0.1", dashboard_address=None)
                self._client = Client(self._cluster)
                log.info("dask: local cluster, %d processes x %d threads", s.workers, s.threads_per_worker)
        return self._client

    def map_chunks(self, fn: Callable[[Any], Any], chunks: Iterable[Sequence[Any]]) -> Iterator[list[Any]]:
        """``[fn(x) for x in chunk]`` of each chunk on the cluster, in order, a bounded number in flight.

        An exception raised by ``fn`` on a worker is raised here as the same exception (type, message
        and attributes), as the thread pool would; the worker's traceback is added as a note.
        """
        client = self.client()
        in_flight = 4 * max(1, sum(client.nthreads().values()))
        remote_fn = client.scatter(fn, hash=False, broadcast=True)  # sent once, not with every chunk
        chunks = iter(chunks)
        pending = deque(client.submit(_apply, remote_fn, list(c), pure=False) for c in islice(chunks, in_flight))
        try:
            while pending:
                ok, value = pending.popleft().result()
                nxt = next(chunks, None)
                if nxt is not None:
                    pending.append(client.submit(_apply, remote_fn, list(nxt), pure=False))
                if not ok:
                    raise value.rebuild()
                yield value
        finally:
            client.cancel([*pending, remote_fn])

    def close(self) -> None:
        if getattr(self, "_seceded", False):
            from distributed import rejoin

            rejoin()
            self._seceded = False
        if self._owned and self._client is not None:
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None


@contextmanager
def open_workers(settings: DaskSettings, threads: int | None = None) -> Iterator[int | DaskPool | None]:
    """What a stage passes down as ``workers``: ``threads``, or a :class:`DaskPool` closed at the end."""
    if settings.min_items is None:
        yield threads
        return
    pool = DaskPool(settings, threads)
    try:
        yield pool
    finally:
        pool.close()


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class _Raised:
    """An exception raised on a worker, carried back without calling its ``__init__`` (the project's
    errors take other arguments than the message, which plain pickling of an exception assumes)."""

    cls: type[BaseException]
    args: tuple
    state: dict
    trace: str

    @classmethod
    def of(cls, exc: BaseException) -> _Raised:
        trace = traceback.format_exc()
        try:
            pickle.dumps((type(exc), exc.args, vars(exc)))
            return cls(type(exc), exc.args, dict(vars(exc)), trace)
        except Exception:  # noqa: BLE001 - an exception that cannot travel still says what happened
            return cls(RuntimeError, (f"{type(exc).__name__}: {exc}",), {}, trace)

    def rebuild(self) -> BaseException:
        exc = self.cls.__new__(self.cls, *self.args)
        exc.__dict__.update(self.state)
        exc.add_note(f"(raised on a Dask worker)\n{self.trace}")
        return exc


def _apply(fn: Callable[[Any], Any], chunk: list[Any]) -> tuple[bool, Any]:
    try:
        return True, [fn(x) for x in chunk]
    except Exception as exc:  # noqa: BLE001 - raised again, as itself, by DaskPool.map_chunks
        return False, _Raised.of(exc)
