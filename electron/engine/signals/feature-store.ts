// Per-item scalar features (migration 2's item_features table): measurements that need the
// pixels, such as the squeeze distances, kept so that retraining never has to decode the
// baseline again. Keyed by item, the encoder that measured them, and a versioned name.
import type Database from 'better-sqlite3';

export class FeatureStore {
  private readonly getStmt: Database.Statement;
  private readonly putStmt: Database.Statement;

  constructor(private readonly db: Database.Database) {
    this.getStmt = db.prepare('SELECT name, value FROM item_features WHERE item_id = ? AND encoder_id = ?');
    this.putStmt = db.prepare(
      `INSERT INTO item_features (item_id, encoder_id, name, value, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT(item_id, encoder_id, name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at`,
    );
  }

  /** The values of `names` for one item, in order, or null unless every one is stored. */
  get(itemId: number, encoderId: string, names: readonly string[]): number[] | null {
    const rows = this.getStmt.all(itemId, encoderId) as { name: string; value: number }[];
    const byName = new Map(rows.map((r) => [r.name, r.value]));
    const out: number[] = [];
    for (const n of names) {
      const v = byName.get(n);
      if (v === undefined) return null;
      out.push(v);
    }
    return out;
  }

  put(itemId: number, encoderId: string, values: Readonly<Record<string, number>>): void {
    const now = new Date().toISOString();
    this.db.transaction(() => {
      for (const [name, value] of Object.entries(values)) this.putStmt.run(itemId, encoderId, name, value, now);
    })();
  }
}
