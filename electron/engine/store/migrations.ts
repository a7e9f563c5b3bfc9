// Versioned schema migrations. Each entry runs once, in order, inside a transaction;
// PRAGMA user_version records how far a database has come. Never edit a shipped
// migration: add a new one.

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE baselines (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
      );

      -- One row per distinct content (sha256 of the original bytes).
      CREATE TABLE items (
        id            INTEGER PRIMARY KEY,
        sha256        TEXT NOT NULL UNIQUE,
        modality      TEXT NOT NULL,
        mime          TEXT NOT NULL,
        width         INTEGER,
        height        INTEGER,
        bytes         INTEGER NOT NULL,
        first_path    TEXT,
        first_seen_at TEXT NOT NULL
      );

      -- Every time an item was met, where and through which channel (cli, mcp, upload...).
      CREATE TABLE sightings (
        id       INTEGER PRIMARY KEY,
        item_id  INTEGER NOT NULL REFERENCES items(id),
        path     TEXT,
        source   TEXT NOT NULL,
        seen_at  TEXT NOT NULL
      );
      CREATE INDEX sightings_item ON sightings(item_id);

      CREATE TABLE baseline_items (
        baseline_id INTEGER NOT NULL REFERENCES baselines(id),
        item_id     INTEGER NOT NULL REFERENCES items(id),
        added_at    TEXT NOT NULL,
        PRIMARY KEY (baseline_id, item_id)
      );

      -- Embedding cache: a vector is only ever reused for the same bytes and the same encoder id
      -- (the id carries a hash of the encoder's weights and preprocessing).
      CREATE TABLE embeddings (
        item_id     INTEGER NOT NULL REFERENCES items(id),
        encoder_id  TEXT NOT NULL,
        dim         INTEGER NOT NULL,
        vector      BLOB NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (item_id, encoder_id)
      );

      -- Detector sets are versioned per baseline; exactly one may be active per baseline.
      CREATE TABLE detector_sets (
        id           INTEGER PRIMARY KEY,
        baseline_id  INTEGER NOT NULL REFERENCES baselines(id),
        version      INTEGER NOT NULL,
        encoder_id   TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        n_items      INTEGER NOT NULL,
        config       TEXT NOT NULL,
        stats        TEXT NOT NULL,
        state        BLOB NOT NULL,
        active       INTEGER NOT NULL DEFAULT 0,
        UNIQUE (baseline_id, version)
      );

      CREATE TABLE verdicts (
        id               INTEGER PRIMARY KEY,
        item_id          INTEGER NOT NULL REFERENCES items(id),
        detector_set_id  INTEGER NOT NULL REFERENCES detector_sets(id),
        encoder_id       TEXT NOT NULL,
        provider         TEXT NOT NULL,
        engine_version   TEXT NOT NULL,
        risk             REAL NOT NULL,
        p_value          REAL NOT NULL,
        decision         TEXT NOT NULL CHECK (decision IN ('allow','review','block')),
        signals          TEXT NOT NULL,
        neighbours       TEXT NOT NULL,
        source           TEXT NOT NULL,
        path             TEXT,
        duration_ms      REAL,
        created_at       TEXT NOT NULL
      );
      CREATE INDEX verdicts_item ON verdicts(item_id);
      CREATE INDEX verdicts_decision ON verdicts(decision, created_at);

      CREATE TABLE labels (
        id          INTEGER PRIMARY KEY,
        item_id     INTEGER NOT NULL REFERENCES items(id),
        label       TEXT NOT NULL CHECK (label IN ('benign','malicious')),
        reason      TEXT,
        analyst     TEXT NOT NULL,
        created_at  TEXT NOT NULL
      );
      CREATE INDEX labels_item ON labels(item_id);

      -- Append-only, hash-chained: each row's hash covers the previous row's hash, so a
      -- rewritten or deleted row breaks the chain (verifyAudit finds it).
      CREATE TABLE audit_log (
        id         INTEGER PRIMARY KEY,
        at         TEXT NOT NULL,
        actor      TEXT NOT NULL,
        action     TEXT NOT NULL,
        subject    TEXT,
        details    TEXT NOT NULL,
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL
      );
      CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
      CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    `,
  },
  {
    version: 2,
    name: 'item features, triage state, jobs',
    sql: `
      -- Scalar per-item measurements that need the pixels, not just the embedding (for
      -- example how far the embedding moves under feature squeezing), per encoder.
      CREATE TABLE item_features (
        item_id     INTEGER NOT NULL REFERENCES items(id),
        encoder_id  TEXT NOT NULL,
        name        TEXT NOT NULL,
        value       REAL NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (item_id, encoder_id, name)
      );

      -- Where each flagged item stands in the analysts' queue; a disposition on close keeps
      -- false-positive rates real.
      CREATE TABLE triage (
        item_id      INTEGER PRIMARY KEY REFERENCES items(id),
        state        TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new','triaged','closed')),
        disposition  TEXT CHECK (disposition IS NULL OR disposition IN ('true_positive','false_positive','duplicate')),
        reason       TEXT,
        updated_at   TEXT NOT NULL,
        updated_by   TEXT
      );

      -- Long work (baseline import, training, UMAP, red-team runs) with persisted progress.
      CREATE TABLE jobs (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('queued','running','done','failed','cancelled')),
        progress    REAL NOT NULL DEFAULT 0,
        detail      TEXT,
        params      TEXT NOT NULL DEFAULT '{}',
        result      TEXT,
        error       TEXT,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'one active detector set per baseline and modality',
    sql: `
      -- A baseline holding images and audio trains one detector set per modality (each with
      -- its own encoder); activation is per (baseline, modality). Older sets are image sets.
      ALTER TABLE detector_sets ADD COLUMN modality TEXT NOT NULL DEFAULT 'image';
      CREATE INDEX detector_sets_active ON detector_sets(baseline_id, modality, active);

      -- Video items: the sampled frames' embeddings and timestamps (gzip JSON), per image
      -- encoder, so the temporal calibration never decodes the baseline's videos again.
      CREATE TABLE video_series (
        item_id     INTEGER NOT NULL REFERENCES items(id),
        encoder_id  TEXT NOT NULL,
        series      BLOB NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (item_id, encoder_id)
      );

      -- CLIP image–text agreement calibrations fitted on a baseline's captioned images; the newest is used.
      CREATE TABLE clip_calibrations (
        id           INTEGER PRIMARY KEY,
        baseline_id  INTEGER NOT NULL REFERENCES baselines(id),
        encoder_id   TEXT NOT NULL,
        n_pairs      INTEGER NOT NULL,
        state        TEXT NOT NULL,
        created_at   TEXT NOT NULL
      );

      -- Temporal-consistency calibrations fitted on a baseline's videos; the newest is used.
      CREATE TABLE video_calibrations (
        id           INTEGER PRIMARY KEY,
        baseline_id  INTEGER NOT NULL REFERENCES baselines(id),
        encoder_id   TEXT NOT NULL,
        n_videos     INTEGER NOT NULL,
        state        BLOB NOT NULL,
        created_at   TEXT NOT NULL
      );
    `,
  },
];
