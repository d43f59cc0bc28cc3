"""The ``harness view`` web app: Starlette routes over a results database opened read-only, pages
rendered on the server from the templates beside this module (Jinja2, autoescaped: every prompt,
output and name is text), its stylesheet served from ``static/`` (nothing is loaded from the network).

Each request opens the database read-only (``Store.open_read_only``) and closes it, so a page sees
what a run still in progress has written so far, and no connection is shared between threads.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from harness.core.deps import preload
from harness.core.errors import HarnessError
from harness.store import Store
from harness.store.browse import (
    ItemFilter,
    ItemSort,
    RunOverview,
    ScoreTable,
    item_exists,
    item_page,
    item_rows,
    label_text,
    margins,
    run_facets,
    run_overview,
    run_page,
    score_table,
    search_rows,
)
from harness.view.cache import ViewCache, file_signature
from harness.view.context import (
    AbChoicePage,
    AbQuery,
    NotFound,
    RunPage,
    build_ab_page,
    build_run_page,
    build_sensitivity_page,
    overview_of,
    page_values,
    values,
)
from harness.view.digest import DIGEST_MIN_ROWS, best_cells_digest, margins_digest, page_results, run_page_digest, score_table_digest
from harness.view.pages import BestCell, best_cells, cell_label, input_text, item_cell_view, matrix_cell, task_cells
from harness.view.render import HERE, environment

RUNS_PER_PAGE = 50
ITEMS_PER_PAGE = 50
LOOPBACK_NAMES = ("localhost", "127.0.0.1")
T = TypeVar("T")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine only: 127.0.0.0/8, ::1, or a name that resolves only there."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def check_host(host: str, explicit: bool) -> None:
    """Refuse to serve on an address other machines can reach unless it was asked for by name (``--host``)."""
    if not explicit and not is_loopback(host):
        raise HarnessError(f"harness view binds {host}, which is not a loopback address: anyone who can reach it could read every "
                           "prompt and output in the database; pass --host explicitly to serve on it")


class Viewer:
    """The pages, over one database path."""

    def __init__(self, db: Path) -> None:
        self.db = Path(db)
        Store.open_read_only(self.db, never_write=True).close()  # "no database at PATH" now, not on the first page
        self.cache = ViewCache(self.db, limits={"best": 1000, "overview": 200, "search": 32, "runs": 64})  # until the file changes (view/cache.py)
        self.templates = environment()
        preload("scipy.stats")  # every page's intervals use it: imported now, not by the first request

    @contextmanager
    def store(self) -> Iterator[Store]:
        store = Store.open_read_only(self.db, never_write=True)
        try:
            yield store
        finally:
            store.close()

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(db=str(self.db), **values)
        return HTMLResponse(html, status_code=status)

    # -- pages ---------------------------------------------------------------------
    def runs(self, request: Request) -> Response:
        q = request.query_params
        task, model, status = q.get("task") or None, q.get("model") or None, q.get("status") or None
        created_from, created_to = _day(q.get("created_from")), _day(q.get("created_to"))
        page = _page(q.get("page"))
        signature = file_signature(self.db)
        with self.store() as store:
            found = self.cache.get(("runs", task, model, status, created_from, created_to, page), functools.partial(
                run_page, store, task=task, model=model, status=status, created_from=created_from, created_to=created_to,
                offset=(page - 1) * RUNS_PER_PAGE, limit=RUNS_PER_PAGE), signature)  # its item counts read every run's items
            facets = self.cache.get(("facets",), functools.partial(run_facets, store), signature)
            rows = [(overview, self.cache.get(("best", overview.run.id, overview.n_items), functools.partial(self._best, store, overview), signature))
                    for overview in found.runs]
        filters = {"task": task, "model": model, "status": status, "created_from": created_from.isoformat() if created_from else None,
                   "created_to": created_to.isoformat() if created_to else None}
        return self.render("runs.html", rows=rows, facets=facets, total=found.total, filters=filters,
                           page=page, pages=max(1, math.ceil(found.total / RUNS_PER_PAGE)))

    def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        margin = _margin(request.query_params.get("margin"))
        signature = file_signature(self.db)  # the page is kept until the database changes (harness/view/cache.py)
        with self.store() as store:
            overview = self._overview(store, run_id)

            def build() -> RunPage:
                # a big run's comparison takes a while: the digest its writer kept (harness/view/digest.py), when current
                found = run_page_digest(store, run_id) if margin is None else None
                if found is not None:
                    return build_run_page(store, [overview], found, margin=margin)
                t0 = time.perf_counter()
                page = build_run_page(store, [overview], page_results(store, overview, margin), margin=margin)
                if margin is None and overview.n_items >= DIGEST_MIN_ROWS:
                    page = dataclasses.replace(page, note=f"computed from {overview.n_items:,} item results in {time.perf_counter() - t0:.1f} s "
                                               f"(kept until the database changes); `harness digest {run_id}` stores it, so a first view is a read")
                return page

            page = self.cache.get(("run", run_id, margin), build, signature)
        return self.render("run.html", **page_values(page))

    def items(self, request: Request) -> Response:
        run_id, q = request.path_params["run_id"], request.query_params
        signature = file_signature(self.db)  # before any read: a write while this page reads is seen by the next request
        with self.store() as store:
            overview = self.cache.get(("overview", run_id), lambda: run_overview(store, run_id), signature)
            if overview is None:
                raise HTTPException(404, f"no run {run_id} in {self.db}")
            tasks = overview.tasks
            task = q.get("task") or (tasks[0] if tasks else "")
            if tasks and task not in tasks:
                raise HTTPException(404, f"run {run_id} has no task {task} (its tasks: {', '.join(tasks)})")
            cells = [c for c in overview.cells if c.task == task]
            ids, metric, higher_is_better = task_cells(overview, task)
            show = q.get("show") or "all"
            a, b = q.get("a") or None, q.get("b") or None
            for ref in (a, b):
                if ref is not None and ref not in ids:
                    raise HTTPException(404, f"task {task} of run {run_id} has no cell {ref}")
            label, cluster = q.get("label") or None, q.get("cluster") or None
            sort: ItemSort = "margin" if q.get("sort") == "margin" and ids else "split"
            margin_in = (a or ids[0]) if sort == "margin" else None  # the margin of cell A, or of the first cell
            where = ItemFilter(search=(q.get("q") or "").strip(), metric=metric, disagree=show == "disagree", unscorable=show == "unscorable",
                               label=label, cluster=cluster, sort=sort, margin_in=margin_in)
            if show == "flips" and a and b:  # wrong (worse) in A, right (better) in B, in the metric's direction
                lower, higher = (a, b) if higher_is_better else (b, a)
                where = dataclasses.replace(where, lower_in=lower, higher_in=higher)
            table = self.cache.get(("table", run_id, ids, metric), functools.partial(self._table, store, run_id, ids, metric), signature)
            margin = None
            if margin_in is not None:
                margin = self.cache.get(("margin", run_id, ids, margin_in), functools.partial(self._margins, store, table, margin_in), signature)
            matches = None
            if where.search:  # kept, so the next page or another filter on the same search reads no text
                matches = self.cache.get(("search", run_id, ids, where.search), lambda: search_rows(store, run_id, ids, where.search),
                                         signature)
            page = _page(q.get("page"))
            found = item_page(store, run_id, ids, where, offset=(page - 1) * ITEMS_PER_PAGE, limit=ITEMS_PER_PAGE, table=table, margin=margin,
                              matches=matches)
        at = {item: k for k, item in enumerate(table.item_ids)} if margin is not None else {}
        rows = []
        for item_id in found.item_ids:
            stored = [found.rows.get((item_id, c)) for c in ids]
            first = next(r for r in stored if r is not None)
            value = float(margin[at[item_id]]) if margin is not None else math.nan
            rows.append((item_id, input_text(first), [matrix_cell(r, metric) for r in stored], "" if value != value else f"{value:+.2f}"))
        params = {"task": task, "q": where.search, "show": show if show != "all" else "", "a": a, "b": b, "label": label, "cluster": cluster,
                  "sort": sort if sort != "split" else ""}
        labels = [(value, label_text(value)) for value in table.label_values()]
        return self.render("items.html", overview=overview, task=task, tasks=tasks, cells=[(c, cell_label(c, cells)) for c in cells],
                           metric=metric, rows=rows, total=found.total, page=page, pages=max(1, math.ceil(found.total / ITEMS_PER_PAGE)),
                           params=params, show=show, a=a, b=b, labels=labels, clusters=table.cluster_values(), label=label, cluster=cluster,
                           sort=sort, margin_in=next((lab for c, lab in ((c, cell_label(c, cells)) for c in cells) if c.cell_id == margin_in), ""))

    def item(self, request: Request) -> Response:
        run_id, item_id = request.path_params["run_id"], request.path_params["item_id"]
        with self.store() as store:
            overview = run_overview(store, run_id)
            if overview is None:
                raise HTTPException(404, f"no run {run_id} in {self.db}")
            if not item_exists(store, run_id, item_id):
                raise HTTPException(404, f"run {run_id} has no item {item_id}")
            rows = item_rows(store, run_id, [item_id])
        by_cell = {cell_id: row for (_, cell_id), row in rows.items()}
        cells = [c for c in overview.cells if c.cell_id in by_cell]
        views = [(cell_label(c, cells), item_cell_view(c, by_cell[c.cell_id])) for c in cells]
        return self.render("item.html", overview=overview, item_id=item_id, views=views, task=cells[0].task if cells else "")

    # each: the digest the run's writer kept (harness/view/digest.py) when it is current, else computed from the items
    @staticmethod
    def _table(store: Store, run_id: str, cell_ids: tuple[str, ...], metric: str) -> ScoreTable:
        found = score_table_digest(store, run_id, cell_ids, metric)
        return score_table(store, run_id, cell_ids, metric) if found is None else found

    @staticmethod
    def _margins(store: Store, table: ScoreTable, cell_id: str) -> np.ndarray:
        found = margins_digest(store, table, cell_id)
        return margins(store, table.run_id, cell_id, table.item_ids) if found is None else found

    @staticmethod
    def _best(store: Store, overview: RunOverview) -> list[BestCell]:
        if not overview.n_items:
            return []
        found = best_cells_digest(store, overview.run.id)
        return best_cells(store, overview) if found is None else found

    def _overview(self, store: Store, run_id: str) -> RunOverview:
        return self._found(lambda: overview_of(store, run_id))

    def ab(self, request: Request) -> Response:
        """``harness ab --base-run BASE --tuned-run RUN [--base LABEL] [--tuned LABEL]`` as a page: this run is the tuned side;
        without a base run or model labels, the pairings there are to choose from."""
        run_id, q = request.path_params["run_id"], request.query_params
        query = AbQuery(run_id, q.get("base_run") or None, q.get("base") or None, q.get("tuned") or None,
                        {"margin": _margin(q.get("margin"))})
        with self.store() as store:
            page = self._found(lambda: build_ab_page(store, query))
        return self.render("ab_choose.html" if isinstance(page, AbChoicePage) else "ab.html", **values(page))

    def sensitivity(self, request: Request) -> Response:
        """``harness sensitivity RUN [RUN ...]`` as a page: this run and any ``?also=RUN``."""
        run_id, q = request.path_params["run_id"], request.query_params
        with self.store() as store:
            page = self._found(lambda: build_sensitivity_page(store, run_id, q.getlist("also")))
        return self.render("sensitivity.html", **values(page))

    @staticmethod
    def _found(build: Callable[[], T]) -> T:
        try:
            return build()
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None

    def not_found(self, request: Request, exc: Exception) -> Response:
        detail = exc.detail if isinstance(exc, HTTPException) else "not found"
        code = exc.status_code if isinstance(exc, HTTPException) else 404
        return self.render("error.html", status=code, message=detail, code=code)


def _day(value: str | None) -> date | None:
    """``?created_from=2026-01-31`` as a date; None when absent or not a date."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _page(value: str | None) -> int:
    try:
        return max(1, int(value or "1"))
    except ValueError:
        return 1


def _margin(value: str | None) -> float | None:
    """``?margin=2`` in points (as the form asks) or 0.02; None when absent or not a positive number."""
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    if number is None or not number > 0 or not math.isfinite(number):
        return None
    return number / 100 if number >= 1 else number


def create_app(db: Path | str, host: str = "127.0.0.1") -> Starlette:
    """The app over the database at ``db``; served on a loopback ``host``, it answers only requests addressed to this
    machine by name (a page on another site cannot reach it through DNS rebinding)."""
    viewer = Viewer(Path(db))
    routes = [
        Route("/", viewer.runs, name="runs"),
        Route("/runs/{run_id}", viewer.run, name="run"),
        Route("/runs/{run_id}/items", viewer.items, name="items"),
        Route("/runs/{run_id}/ab", viewer.ab, name="ab"),
        Route("/runs/{run_id}/sensitivity", viewer.sensitivity, name="sensitivity"),
        Route("/runs/{run_id}/items/{item_id:path}", viewer.item, name="item"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_NAMES))] if host in LOOPBACK_NAMES else []
    return Starlette(routes=routes, middleware=middleware, exception_handlers={404: viewer.not_found, 400: viewer.not_found})


def serve(db: Path | str, host: str = "127.0.0.1", port: int = 8765, *, explicit_host: bool = False,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve the app with uvicorn until interrupted; a non-loopback ``host`` only when ``explicit_host``.
    ``ready`` is told the address once the database has opened and the port is free."""
    check_host(host, explicit_host)
    app = create_app(db, host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:  # a port in use is a clean error, not uvicorn's log line and exit
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port in TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise HarnessError(f"cannot listen on {host}:{port} ({exc.strerror}): pass --port another port (0: any free one)") from None
    if ready is not None:
        ready(f"http://{f'[{host}]' if ':' in host else host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")
