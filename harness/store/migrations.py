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
