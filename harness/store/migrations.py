"""The results database's schema, as named migrations applied in order (``Store`` records each once).

A migration never changes once released: a new column or table is a new entry, so every
database ever written opens with the current code. A table that a later pass over a stored
run needs (calibration's) is a migration too, never created by its caller.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_initial",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,             -- running | finished
            config_hash TEXT NOT NULL,
            config_json TEXT NOT NULL,
            versions_json TEXT NOT NULL,
            seed INTEGER NOT NULL
        );
        CREATE INDEX runs_by_config ON runs(config_hash, status);
        CREATE TABLE cells (
            run_id TEXT NOT NULL REFERENCES runs(id),
            cell_id TEXT NOT NULL,
            task TEXT NOT NULL,
            task_type TEXT NOT NULL,
            prompt TEXT NOT NULL,
            prompt_sha256 TEXT NOT NULL,
            shots INTEGER NOT NULL,
            selector TEXT NOT NULL,
            model TEXT NOT NULL,
            model_json TEXT NOT NULL,          -- backend identity + description, no secrets
            metrics_json TEXT NOT NULL,        -- metric names, main metric first
            n_planned INTEGER NOT NULL,
            PRIMARY KEY (run_id, cell_id)
        );
        CREATE TABLE items (
            run_id TEXT NOT NULL,
            cell_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            position INTEGER NOT NULL,         -- order in the evaluated split
            prompt_json TEXT NOT NULL,
            continuations_json TEXT,
            demo_ids_json TEXT NOT NULL,
            target_json TEXT NOT NULL,
            response_json TEXT NOT NULL,       -- raw backend results
            extracted TEXT,
            scores_json TEXT NOT NULL,
            latency_s REAL NOT NULL,
            n_tokens INTEGER NOT NULL,
            cached INTEGER NOT NULL,
            PRIMARY KEY (run_id, cell_id, item_id),
            FOREIGN KEY (run_id, cell_id) REFERENCES cells(run_id, cell_id)
        );
        CREATE TABLE cache (
            key TEXT PRIMARY KEY,              -- sha256(backend identity + request)
            result_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        """,
    ),
    (
        # which run first stored each cache entry, so a served-from-cache run can name it (NULL: stored before this)
        "002_cache_run_id",
        "ALTER TABLE cache ADD COLUMN run_id TEXT",
    ),
    (
        # the item's cluster (task.yaml 'cluster:', e.g. its passage): CIs and paired tests resample clusters; NULL = none declared
        "003_item_cluster",
        "ALTER TABLE items ADD COLUMN cluster TEXT",
    ),
    (
        # harness calibrate's per-item rows (Zhao et al. contextual calibration, runner/calibration.py). Before this
        # migration the pass created the same table itself, hence IF NOT EXISTS: such a database migrates as it is
        "004_calibration",
        """
        CREATE TABLE IF NOT EXISTS calibration (
            run_id TEXT NOT NULL, cell_id TEXT NOT NULL, item_id TEXT NOT NULL,
            content_free_json TEXT NOT NULL, p_cf_json TEXT NOT NULL,
            predicted INTEGER NOT NULL, calibrated INTEGER NOT NULL, target INTEGER NOT NULL,
            PRIMARY KEY (run_id, cell_id, item_id))
        """,
    ),
    (
        # the run lifecycle: runs.status is running | failed | finished; a failed run keeps its reason (a resume clears it);
        # owner_json names the process evaluating a running run (pid, host, process start) and owner_seen_at its last write,
        # so a second identical command is refused while that process lives and resumes the run once it is gone
        "005_run_lifecycle",
        """
        ALTER TABLE runs ADD COLUMN error TEXT;
        ALTER TABLE runs ADD COLUMN owner_json TEXT;
        ALTER TABLE runs ADD COLUMN owner_seen_at TEXT
        """,
    ),
]

# What the viewer's full-text search matches in an items row (harness/store/browse.py verifies every candidate against the same
# expressions): the item id, the prompt's text, the outputs (the extracted answer, the choices, a generation's text) and the target.
# A loglikelihood response is numbers only, so it is not text to search; a response that is not strict JSON (a NaN log-prob in a
# generation's token log-probs) is searched as it is stored.
SEARCH_COLUMNS = ("item_id", "prompt", "outputs", "target")


def search_values(row: str) -> tuple[str, ...]:
    """The SQL expressions of ``SEARCH_COLUMNS`` over the items row ``row`` (``new``, ``old`` or a table alias)."""
    outputs = (f"COALESCE({row}.extracted, '') || char(10) || COALESCE({row}.continuations_json, '') || char(10) || "
               f"CASE WHEN {row}.continuations_json IS NOT NULL THEN '' WHEN json_valid({row}.response_json) THEN "
               f"COALESCE((SELECT group_concat(json_extract(value, '$.text'), char(10)) FROM json_each({row}.response_json)), '') "
               f"ELSE {row}.response_json END")
    return f"{row}.item_id", f"json_extract({row}.prompt_json, '$')", outputs, f"{row}.target_json"


def _search_migration() -> str:
    columns = ", ".join(SEARCH_COLUMNS)
    new, old = ", ".join(search_values("new")), ", ".join(search_values("old"))
    delete = f"INSERT INTO items_search(items_search, rowid, {columns}) VALUES ('delete', old.rowid, {old})"
    insert = f"INSERT INTO items_search(rowid, {columns}) VALUES (new.rowid, {new})"
    return f"""
        CREATE INDEX items_scores ON items(run_id, cell_id, position, item_id, scores_json, cluster, target_json);
        CREATE INDEX runs_by_created ON runs(created_at);
        CREATE VIRTUAL TABLE items_search USING fts5({columns}, tokenize='trigram', content='', detail=none);
        INSERT INTO items_search(rowid, {columns}) SELECT rowid, {", ".join(search_values("items"))} FROM items;
        CREATE TRIGGER items_search_insert AFTER INSERT ON items BEGIN {insert}; END;
        CREATE TRIGGER items_search_delete AFTER DELETE ON items BEGIN {delete}; END;
        CREATE TRIGGER items_search_update AFTER UPDATE OF item_id, prompt_json, continuations_json, response_json, extracted, target_json
            ON items BEGIN {delete}; {insert}; END
        """


MIGRATIONS.append(
    # harness view at scale (200,000 items x 8 cells): a covering index of what summaries and the items page read per row (scores,
    # cluster, target, in split order), runs by date, and a trigram full-text index of each row's text (contentless, no positions:
    # it narrows a search to candidate rows, which browse.py checks with LIKE), kept current by triggers on items
    ("006_view_indices", _search_migration()),
)



def _revision_migration() -> str:
    # every write to a run's items, cells or calibration rows adds one to runs.revision (in the writer's own transaction), so a
    # digest stamped with a revision is current exactly while nothing it was computed from has changed; runs.n_items counts the
    # run's item rows the same way (the runs page reads it instead of counting a big run's rows: INSERT OR REPLACE's delete and
    # insert cancel out)
    def change(row: str, items: str = "") -> str:
        return f"UPDATE runs SET revision = revision + 1{items} WHERE id = {row}.run_id"

    moved = " AND old.run_id IS NOT new.run_id"  # an UPDATE that moves a row to another run changes both runs
    triggers = []
    for table in ("items", "cells", "calibration"):
        more, fewer = (", n_items = n_items + 1", ", n_items = n_items - 1") if table == "items" else ("", "")
        bodies = {"INSERT": change("new", more), "DELETE": change("old", fewer),
                  "UPDATE": f"{change('new')}; {change('old', fewer)}{moved}"
                            + (f"; UPDATE runs SET n_items = n_items + 1 WHERE id = new.run_id{moved}" if more else "")}
        for event, body in bodies.items():
            triggers.append(f"CREATE TRIGGER {table}_revision_{event.lower()} AFTER {event} ON {table} BEGIN {body}; END")
    return f"""
        ALTER TABLE runs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN n_items INTEGER NOT NULL DEFAULT 0;
        UPDATE runs SET n_items = (SELECT COUNT(*) FROM items WHERE items.run_id = runs.id);
        {"; ".join(triggers)};
        CREATE TABLE digests (
            run_id TEXT NOT NULL REFERENCES runs(id),
            kind TEXT NOT NULL,                -- what was computed: run_page | best_cells | score_table
            key TEXT NOT NULL,                 -- its parameters (JSON)
            revision INTEGER NOT NULL,         -- runs.revision it was computed at
            producer TEXT NOT NULL,            -- the code that computed it (harness/view/digest.py: a hash of harness's source)
            created_at TEXT NOT NULL,
            body BLOB NOT NULL,
            PRIMARY KEY (run_id, kind, key)
        )
        """


MIGRATIONS.append(
    # what the viewer shows of a big run, computed once when the run finishes (harness/view/digest.py) instead of on its first
    # view: a table of digests, each valid only at the run revision it was computed at
    ("007_run_digests", _revision_migration()),
)


def _race_migration() -> str:
    # a write to a run's race rows raises its revision too (migration 007), so a digest of a raced run's page is current only
    # while its race state is the one it showed
    bump = "UPDATE runs SET revision = revision + 1 WHERE id = {0}.run_id"
    triggers = [f"CREATE TRIGGER races_revision_{event.lower()} AFTER {event} ON races BEGIN {bump.format(row)}; END"
                for event, row in (("INSERT", "new"), ("UPDATE", "new"), ("DELETE", "old"))]
    return f"""
        CREATE TABLE races (
            run_id TEXT NOT NULL REFERENCES runs(id),
            task TEXT NOT NULL,
            metric TEXT NOT NULL,
            reason TEXT NOT NULL,              -- racing | winner | equivalent | budget | exhausted
            state_json TEXT NOT NULL,          -- alpha, margin, round size, budgets, bounds, rounds, evaluations, requests, tokens, guarantee
            updated_at TEXT NOT NULL,
            PRIMARY KEY (run_id, task)
        );
        CREATE TABLE race_cells (
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            cell_id TEXT NOT NULL,
            status TEXT NOT NULL,              -- racing | eliminated | winner | equivalent | undecided
            round INTEGER NOT NULL,            -- the round it stopped at (its latest for a survivor)
            items INTEGER NOT NULL,            -- items it was scored on then
            mean REAL,                         -- its mean race score then (NULL: no item)
            beaten_by TEXT,                    -- the cell id that eliminated it
            diff_low REAL,                     -- the confidence sequence of beaten_by - cell when it was eliminated
            diff_high REAL,
            reason TEXT NOT NULL,
            PRIMARY KEY (run_id, task, cell_id),
            FOREIGN KEY (run_id, task) REFERENCES races(run_id, task)
        );
        {"; ".join(triggers)}
        """


MIGRATIONS.append(
    # harness run --until-decided (harness/runner/racing.py): each task's race, written after every round: which cells stopped
    # when and why, and the guarantee with its alpha, margin and budgets
    ("008_race_outcomes", _race_migration()),
)

MIGRATIONS.append(
    # the cost ledger (harness/runner/ledger.py): per item, its requests (json_array_length(response_json) for older rows), of them
    # how many were sent to the model (the rest were served
    # from the response cache or by an identical request of the same run), and the input and output tokens of all its requests
    # and of those sent (NULL: a backend that did not report them, or an item stored before this migration); and the price
    # table of the run's experiment file (kept beside the run, not in its identity: prices change no result)
    ("009_cost_ledger", """
        ALTER TABLE items ADD COLUMN n_requests INTEGER;
        ALTER TABLE items ADD COLUMN requests_sent INTEGER;
        ALTER TABLE items ADD COLUMN tokens_in INTEGER;
        ALTER TABLE items ADD COLUMN tokens_out INTEGER;
        ALTER TABLE items ADD COLUMN sent_tokens_in INTEGER;
        ALTER TABLE items ADD COLUMN sent_tokens_out INTEGER;
        CREATE TABLE run_prices (
            run_id TEXT PRIMARY KEY REFERENCES runs(id),
            prices_json TEXT NOT NULL,         -- model label -> {input_per_million, output_per_million, per_request, currency}
            updated_at TEXT NOT NULL
        )
        """),
)

# migrations a reader that never writes (harness view) can do without: 006 adds only indices (harness/store/browse.py falls
# back where it would use them); 007's digests are only a shortcut (without them every page is computed from the items); a
# database without 008 has no raced run (Store.races finds none); without 009 no item is metered and no run priced
OPTIONAL_ON_READ = frozenset({"006_view_indices", "007_run_digests", "008_race_outcomes", "009_cost_ledger"})
