// Shapes of everything the workbench API carries, as zod schemas: the server validates every
// request it receives and every response it sends, the client every request it sends and
// every response it receives. Names follow the domain (Baseline, Item, Verdict, Signal,
// DetectorSet, Label), the same words as the SQL columns and the CLI.
import * as z from 'zod';

export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256');
export const Decision = z.enum(['allow', 'review', 'block']);
export const TriageState = z.enum(['new', 'triaged', 'closed']);
export const Disposition = z.enum(['true_positive', 'false_positive', 'duplicate']);
export const LabelValue = z.enum(['benign', 'malicious']);
/** ISO 8601 timestamps as written by the store (`Date.toISOString()`). */
export const Timestamp = z.string().min(1);
const unit = z.number().min(0).max(1);
const finite = z.number().refine(Number.isFinite, 'must be finite');
const count = z.number().int().min(0);
const BaselineName = z.string().min(1).max(200);
const Analyst = z.string().min(1).max(200);
const Reason = z.string().max(2000);

// ---- jobs -------------------------------------------------------------------------------------

export const JobState = z.enum(['queued', 'running', 'done', 'failed', 'cancelled']);
export const Job = z.object({
  id: z.number().int(),
  /** baseline-import, scan, rescan, retrain, retrain-preview, demo. */
  kind: z.string(),
  state: JobState,
  progress: unit,
  detail: z.string().nullable(),
  params: z.unknown(),
  result: z.unknown().nullable(),
  error: z.string().nullable(),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export type Job = z.infer<typeof Job>;
export const JobRef = z.object({ job: Job });

// ---- signals, verdicts ------------------------------------------------------------------------

/** One signal's part of a verdict; `risk` is calibrated on held-out baseline items. */
export const SignalBreakdown = z.object({
  name: z.string(),
  raw: finite,
  risk: unit,
  p: unit,
  weight: z.number().min(0),
  share: unit,
});
export type SignalBreakdown = z.infer<typeof SignalBreakdown>;

export const Thresholds = z.object({ review: unit, block: unit });

export const DetectorSetRef = z.object({
  id: z.number().int(),
  version: z.number().int(),
  active: z.boolean(),
});

export const Verdict = z.object({
  id: z.number().int(),
  decision: Decision,
  risk: unit,
  p: unit,
  created_at: Timestamp,
  detector_set: DetectorSetRef,
  encoder_id: z.string(),
  provider: z.string(),
  engine_version: z.string(),
  source: z.string(),
  duration_ms: z.number().nullable(),
  /** Sorted by share of the fused evidence, largest first. */
  signals: z.array(SignalBreakdown),
  thresholds: Thresholds.nullable(),
});
export type Verdict = z.infer<typeof Verdict>;

// ---- status -----------------------------------------------------------------------------------

export const StatusRequest = z.strictObject({});
export const StatusResponse = z.object({
  version: z.string(),
  data_dir: z.string(),
  schema_version: z.number().int(),
  encoder: z.object({
    id: z.string().nullable(),
    dim: z.number().int().nullable(),
    provider: z.string().nullable(),
    provider_note: z.string().nullable(),
    error: z.string().nullable(),
  }),
  active_baseline: z.string(),
  baselines: z.array(
    z.object({
      name: z.string(),
      items: count,
      detector_set: z
        .object({ id: z.number().int(), version: z.number().int(), created_at: Timestamp, age_days: z.number(), stale: z.boolean() })
        .nullable(),
    }),
  ),
  verdicts: z.object({ allow: count, review: count, block: count }),
  queue: z.object({ new: count, triaged: count, closed: count }),
  audit_chain_ok: z.boolean(),
  analyst: z.string(),
  transport: z.string(),
});
export type StatusResponse = z.infer<typeof StatusResponse>;

// ---- triage queue -----------------------------------------------------------------------------

export const QueueRequest = z.strictObject({
  decision: z.array(Decision).optional(),
  state: z.array(TriageState).optional(),
  source: z.array(z.string()).optional(),
  label: z.array(z.enum(['benign', 'malicious', 'none'])).optional(),
  since: Timestamp.optional(),
  until: Timestamp.optional(),
  sort: z.enum(['risk', 'time']).default('risk'),
  order: z.enum(['desc', 'asc']).default('desc'),
  offset: count.default(0),
  limit: z.number().int().min(1).max(500).default(50),
});

export const QueueItem = z.object({
  sha256: Sha256,
  item_id: z.number().int(),
  decision: Decision,
  risk: unit,
  p: unit,
  /** The signals that carried most of the evidence, largest share first. */
  top_signals: z.array(z.object({ name: z.string(), share: unit, risk: unit })),
  source: z.string(),
  path: z.string().nullable(),
  mime: z.string(),
  width: z.number().int().nullable(),
  height: z.number().int().nullable(),
  first_seen_at: Timestamp,
  scanned_at: Timestamp,
  detector_set_version: z.number().int().nullable(),
  state: TriageState,
  disposition: Disposition.nullable(),
  label: LabelValue.nullable(),
});
export type QueueItem = z.infer<typeof QueueItem>;

export const QueueResponse = z.object({
  items: z.array(QueueItem),
  total: count,
  offset: count,
  limit: z.number().int(),
  counts: z.object({
    state: z.object({ new: count, triaged: count, closed: count }),
    decision: z.object({ allow: count, review: count, block: count }),
  }),
  sources: z.array(z.string()),
});
export type QueueResponse = z.infer<typeof QueueResponse>;

// ---- item -------------------------------------------------------------------------------------

export const ItemRequest = z.strictObject({ sha256: Sha256 });

export const MediaStatus = z.object({
  retained: z.boolean(),
  /** Why the media cannot be shown, in words ("media not retained: …"). */
  reason: z.string().nullable(),
});

export const NeighbourOut = z.object({
  sha256: Sha256,
  item_id: z.number().int(),
  path: z.string().nullable(),
  distance: z.number(),
});

export const LabelOut = z.object({
  id: z.number().int(),
  label: LabelValue,
  reason: z.string().nullable(),
  analyst: z.string(),
  created_at: Timestamp,
});

export const AuditOut = z.object({
  id: z.number().int(),
  at: Timestamp,
  actor: z.string(),
  action: z.string(),
  subject: z.string().nullable(),
  details: z.unknown(),
});

export const ItemDetail = z.object({
  item: z.object({
    id: z.number().int(),
    sha256: Sha256,
    modality: z.string(),
    mime: z.string(),
    width: z.number().int().nullable(),
    height: z.number().int().nullable(),
    bytes: count,
    first_path: z.string().nullable(),
    first_seen_at: Timestamp,
  }),
  media: MediaStatus,
  verdict: Verdict.nullable(),
  verdict_history: z.array(
    z.object({
      id: z.number().int(),
      decision: Decision,
      risk: unit,
      created_at: Timestamp,
      detector_set_version: z.number().int().nullable(),
      source: z.string(),
    }),
  ),
  neighbours: z.array(NeighbourOut),
  sightings: z.array(z.object({ path: z.string().nullable(), source: z.string(), seen_at: Timestamp })),
  features: z.array(z.object({ name: z.string(), value: z.number(), encoder_id: z.string() })),
  triage: z.object({
    state: TriageState,
    disposition: Disposition.nullable(),
    reason: z.string().nullable(),
    updated_at: Timestamp.nullable(),
    updated_by: z.string().nullable(),
  }),
  labels: z.array(LabelOut),
  audit: z.array(AuditOut),
  baselines: z.array(z.string()),
});
export type ItemDetail = z.infer<typeof ItemDetail>;

// ---- labels, triage ---------------------------------------------------------------------------

export const LabelRequest = z.strictObject({
  sha256: Sha256,
  label: LabelValue,
  reason: Reason.optional(),
  analyst: Analyst.optional(),
});
export const LabelBulkRequest = z.strictObject({
  sha256s: z.array(Sha256).min(1).max(5000),
  label: LabelValue,
  reason: Reason.optional(),
  analyst: Analyst.optional(),
});
export const LabelResponse = z.object({
  labelled: count,
  items: z.array(z.object({ sha256: Sha256, label: LabelValue, state: TriageState })),
});

export const TriageRequest = z
  .strictObject({
    sha256s: z.array(Sha256).min(1).max(5000),
    state: TriageState,
    disposition: Disposition.optional(),
    reason: Reason.optional(),
    analyst: Analyst.optional(),
  })
  .superRefine((r, ctx) => {
    if (r.state === 'closed' && !r.disposition) {
      ctx.addIssue({ code: 'custom', path: ['disposition'], message: 'closing needs a disposition (true_positive, false_positive or duplicate)' });
    }
    if (r.state !== 'closed' && r.disposition) {
      ctx.addIssue({ code: 'custom', path: ['disposition'], message: 'a disposition is only given when closing' });
    }
    if (r.disposition === 'false_positive' && !r.reason?.trim()) {
      ctx.addIssue({ code: 'custom', path: ['reason'], message: 'a false positive needs a reason (what made it legitimate)' });
    }
  });
export const TriageResponse = z.object({
  updated: count,
  items: z.array(z.object({ sha256: Sha256, state: TriageState, disposition: Disposition.nullable() })),
});

export const SimilarRequest = z.strictObject({
  sha256: Sha256,
  k: z.number().int().min(1).max(500).default(20),
  scope: z.enum(['scanned', 'baseline']).default('scanned'),
  /** Cosine distance cut-off; items farther away are left out. */
  max_distance: z.number().min(0).max(2).optional(),
});
export const SimilarResponse = z.object({
  encoder_id: z.string(),
  items: z.array(
    z.object({
      sha256: Sha256,
      distance: z.number(),
      decision: Decision.nullable(),
      risk: unit.nullable(),
      state: TriageState.nullable(),
      label: LabelValue.nullable(),
      path: z.string().nullable(),
    }),
  ),
});

// ---- embedding map ----------------------------------------------------------------------------

export const MapRequest = z.strictObject({
  baseline: BaselineName.optional(),
  /** Baseline items the projection is fitted on (a deterministic sample). */
  fit_sample: z.number().int().min(10).max(5000).default(2000),
  /** Most points sent in all (fit sample, other baseline items, scanned items). */
  max_points: z.number().int().min(10).max(50_000).default(20_000),
  /** Dimensions of the PCA step that precedes UMAP. */
  dims: z.number().int().min(2).max(64).default(32),
});
/**
 * Packed per-point columns: at 10,000+ points an array of objects (or of strings) costs the
 * page more to parse and validate than to draw, so each column is one string.
 */
export const MapResponse = z
  .object({
    baseline: z.string(),
    encoder_id: z.string(),
    /** Changes when the fit sample or its projection changes; layouts can be cached by it. */
    layout_key: z.string(),
    seed: z.number().int(),
    dims: z.number().int(),
    n_fit: count,
    n: count,
    /** n×dims float32, little-endian, base64; the first n_fit rows are the fit sample. */
    vectors: z.string(),
    explained_variance: z.number(),
    /** n×64 hex characters: point i's sha256 is characters [64i, 64i + 64). */
    sha256: z.string().regex(/^(?:[0-9a-f]{64})*$/),
    /** One character per point: f = baseline fit sample, b = other baseline member, s = scanned. */
    kind: z.string().regex(/^[fbs]*$/),
    /** a / r / b = allow / review / block; - = never scanned. */
    decision: z.string().regex(/^[arb-]*$/),
    /** b / m = benign / malicious; - = unlabelled. */
    label: z.string().regex(/^[bm-]*$/),
    /** n / t / c = new / triaged / closed; - = not in the queue. */
    state: z.string().regex(/^[ntc-]*$/),
    sources: z.array(z.string()),
    /** int32 base64: index into `sources`, -1 for none. */
    source_index: z.string(),
    /** float32 base64: latest fused risk, NaN where never scanned. */
    risk: z.string(),
    /** float64 base64: milliseconds since the epoch (latest verdict, else baseline entry). */
    time: z.string(),
    truncated: z.boolean(),
  })
  .superRefine((m, ctx) => {
    const bad = (what: string) => ctx.addIssue({ code: 'custom', path: [what], message: `length does not match n = ${m.n}` });
    if (m.sha256.length !== m.n * 64) bad('sha256');
    for (const k of ['kind', 'decision', 'label', 'state'] as const) if (m[k].length !== m.n) bad(k);
  });
export type MapResponse = z.infer<typeof MapResponse>;

// ---- drift ------------------------------------------------------------------------------------

export const DriftRequest = z.strictObject({
  baseline: BaselineName.optional(),
  window: z.enum(['day', 'week']).default('day'),
  days: z.number().int().min(1).max(365).default(30),
  /** Significance level of the MMD permutation test that raises the alert. */
  alpha: z.number().gt(0).lt(1).default(0.01),
  /** Share of review + block in a window that raises the alert on its own. */
  flag_share_alert: unit.default(0.2),
  permutations: z.number().int().min(20).max(2000).default(200),
  max_per_window: z.number().int().min(10).max(1000).default(200),
});
export const DriftWindow = z.object({
  start: Timestamp,
  end: Timestamp,
  n: count,
  /** Cosine distance between the window's mean embedding and the baseline's. */
  centroid_shift: z.number().nullable(),
  /** 95th percentile of the same shift for baseline subsamples of the window's size. */
  centroid_shift_null95: z.number().nullable(),
  mmd2: z.number().nullable(),
  p_value: unit.nullable(),
  review_share: unit,
  block_share: unit,
  alert: z.boolean(),
  reasons: z.array(z.string()),
});
export const DriftResponse = z.object({
  baseline: z.string(),
  baseline_n: count,
  encoder_id: z.string().nullable(),
  windows: z.array(DriftWindow),
  daily: z.array(z.object({ day: z.string(), allow: count, review: count, block: count })),
  clusters: z.array(
    z.object({
      id: z.number().int(),
      baseline_share: unit,
      recent_share: unit,
      n_recent: count,
      centroid_shift: z.number().nullable(),
      alert: z.boolean(),
      example_sha256: Sha256.nullable(),
    }),
  ),
  alert: z.object({ raised: z.boolean(), reasons: z.array(z.string()) }),
  method: z.string(),
});
export type DriftResponse = z.infer<typeof DriftResponse>;

// ---- detector sets ----------------------------------------------------------------------------

export const DetectorSetsRequest = z.strictObject({ baseline: BaselineName.optional() });
export const Rate = z.object({ review: unit, block: unit });
export const DetectorSetSummary = z.object({
  id: z.number().int(),
  version: z.number().int(),
  baseline: z.string(),
  created_at: Timestamp,
  n_items: count,
  encoder_id: z.string(),
  active: z.boolean(),
  age_days: z.number(),
  /** Out-of-fold false-positive rate on held-out baseline items (stats.oofFalsePositiveRate). */
  fpr: Rate.nullable(),
  /** Share of malicious-labelled items (with an embedding) this version flags. */
  tpr: Rate.nullable(),
  n_malicious: count,
  thresholds: Thresholds.nullable(),
  weights: z.record(z.string(), z.number()),
  signals: z.array(z.string()),
  train_seconds: z.number().nullable(),
});
export type DetectorSetSummary = z.infer<typeof DetectorSetSummary>;
export const DetectorSetsResponse = z.object({
  baseline: z.string(),
  active_id: z.number().int().nullable(),
  versions: z.array(DetectorSetSummary),
  /** How TPR is measured, in words. */
  tpr_note: z.string(),
});

export const RetrainPlanRequest = z.strictObject({ baseline: BaselineName.optional() });
export const PlanItem = z.object({
  sha256: Sha256,
  label: LabelValue,
  analyst: z.string(),
  labelled_at: Timestamp,
  reason: z.string().nullable(),
  decision: Decision.nullable(),
  risk: unit.nullable(),
  has_embedding: z.boolean(),
});
export const PoisoningWarning = z.object({
  kind: z.enum(['bulk', 'single_analyst', 'high_risk', 'large_share', 'burst', 'no_reason']),
  message: z.string(),
  sha256s: z.array(Sha256),
});
export const RetrainPlan = z.object({
  baseline: z.string(),
  baseline_before: count,
  baseline_after: count,
  /** Benign-labelled items outside the baseline: they join it. */
  joining: z.array(PlanItem),
  /** Baseline members whose latest label is malicious: they leave it. */
  leaving: z.array(PlanItem),
  /** Malicious-labelled items used to measure TPR (never to move thresholds). */
  malicious_for_measurement: count,
  warnings: z.array(PoisoningWarning),
  active: z.object({ id: z.number().int(), version: z.number().int(), fpr: Rate.nullable() }).nullable(),
});
export type RetrainPlan = z.infer<typeof RetrainPlan>;

export const RetrainPreviewResult = z.object({
  plan: RetrainPlan,
  current: z.object({ version: z.number().int().nullable(), fpr: Rate.nullable(), tpr: Rate.nullable(), n_items: count }),
  candidate: z.object({ fpr: Rate, tpr: Rate.nullable(), n_items: count }),
  /** Per signal: the raw score a legitimate item must exceed to reach the review threshold, before and after. */
  threshold_shift: z.array(z.object({ signal: z.string(), before: z.number().nullable(), after: z.number().nullable() })),
  /** Joining items scored by the candidate: how normal they will look once inside. */
  joining_after: z.array(z.object({ sha256: Sha256, risk_before: unit.nullable(), risk_after: unit })),
  seconds: z.number(),
});
export type RetrainPreviewResult = z.infer<typeof RetrainPreviewResult>;

export const RetrainRequest = z.strictObject({
  baseline: BaselineName.optional(),
  /** Required when the plan carries poisoning warnings: the analyst has seen them. */
  acknowledge_warnings: z.boolean().default(false),
  /** Re-score the open queue and the relabelled items with the new version. */
  rescan: z.boolean().default(true),
  analyst: Analyst.optional(),
});
export const RetrainResult = z.object({
  detector_set: z.object({ id: z.number().int(), version: z.number().int(), n_items: count }),
  joined: count,
  left: count,
  seconds: z.number(),
  rescanned: count,
  not_rescanned: z.array(z.object({ sha256: Sha256, reason: z.string() })),
  changed: z.array(z.object({ sha256: Sha256, before: Decision.nullable(), after: Decision, risk_before: unit.nullable(), risk_after: unit })),
});
export type RetrainResult = z.infer<typeof RetrainResult>;

export const ActivateRequest = z.strictObject({ id: z.number().int(), analyst: Analyst.optional() });
export const RollbackRequest = z.strictObject({ baseline: BaselineName.optional(), analyst: Analyst.optional() });
export const ActivateResponse = z.object({ active: DetectorSetSummary, previous_id: z.number().int().nullable() });

export const CompareRequest = z.strictObject({
  a: z.number().int(),
  b: z.number().int(),
  /** Most recently scanned items re-scored by both versions (labelled items are always included). */
  sample: z.number().int().min(0).max(5000).default(500),
});
export const CompareResponse = z.object({
  a: DetectorSetSummary,
  b: DetectorSetSummary,
  params: z.array(z.object({ key: z.string(), a: z.string(), b: z.string() })),
  members: z.object({ only_a: count, only_b: count, both: count }),
  items: z.object({
    n: count,
    /** transitions[from][to]: decisions of the same items under a then b. */
    transitions: z.record(z.string(), z.record(z.string(), count)),
    changed: z.array(
      z.object({
        sha256: Sha256,
        label: LabelValue.nullable(),
        a: z.object({ decision: Decision, risk: unit }),
        b: z.object({ decision: Decision, risk: unit }),
      }),
    ),
  }),
  note: z.string(),
});
export type CompareResponse = z.infer<typeof CompareResponse>;

// ---- bundles ----------------------------------------------------------------------------------

export const ExportRequest = z.strictObject({
  detector_set_id: z.number().int().optional(),
  /** Folder to create; default <data-dir>/exports/<baseline>-v<version>-<time>. Must not exist yet. */
  dir: z.string().min(1).optional(),
  analyst: Analyst.optional(),
});
export const BundleFile = z.object({ path: z.string(), sha256: Sha256, bytes: count });
export const ExportResponse = z.object({
  dir: z.string(),
  files: z.array(BundleFile),
  detector_set: z.object({ id: z.number().int(), version: z.number().int(), n_items: count }),
  encoder_id: z.string(),
});
export const ImportRequest = z.strictObject({
  dir: z.string().min(1),
  /** Baseline to import into; default the bundle's own. */
  baseline: BaselineName.optional(),
  activate: z.boolean().default(true),
  analyst: Analyst.optional(),
});
export const ImportResponse = z.object({
  baseline: z.string(),
  detector_set: z.object({ id: z.number().int(), version: z.number().int(), n_items: count }),
  encoder_id: z.string(),
  items_added: count,
  verified_files: count,
  activated: z.boolean(),
});

// ---- baselines --------------------------------------------------------------------------------

export const BaselinesRequest = z.strictObject({});
export const BaselineSummary = z.object({
  name: z.string(),
  items: count,
  created_at: Timestamp,
  updated_at: Timestamp,
  age_days: z.number(),
  active_version: z.number().int().nullable(),
  detector_set_age_days: z.number().nullable(),
  stale: z.boolean(),
  max_age_days: z.number(),
  min_samples: count,
  sample: z.array(Sha256),
});
export const BaselinesResponse = z.object({ baselines: z.array(BaselineSummary) });

export const BaselineItemsRequest = z.strictObject({
  baseline: BaselineName,
  offset: count.default(0),
  limit: z.number().int().min(1).max(500).default(60),
});
export const BaselineItemsResponse = z.object({
  total: count,
  items: z.array(z.object({ sha256: Sha256, path: z.string().nullable(), added_at: Timestamp, label: LabelValue.nullable() })),
});

export const BaselineImportRequest = z.strictObject({
  baseline: BaselineName.default('default'),
  paths: z.array(z.string().min(1)).min(1).max(1000),
  analyst: Analyst.optional(),
});
export const ScanRequest = z.strictObject({
  paths: z.array(z.string().min(1)).min(1).max(1000),
  baseline: BaselineName.optional(),
  source: z.string().min(1).max(100).default('workbench'),
});
export const RescanRequest = z.strictObject({ sha256s: z.array(Sha256).min(1).max(5000) });

// ---- jobs -------------------------------------------------------------------------------------

export const JobsRequest = z.strictObject({
  kind: z.string().optional(),
  active: z.boolean().optional(),
  limit: z.number().int().min(1).max(500).default(50),
});
export const JobsResponse = z.object({ jobs: z.array(Job) });
export const JobRequest = z.strictObject({ id: z.number().int() });

// ---- media ------------------------------------------------------------------------------------

export const MediaVariant = z.enum(['thumb', 'full']);
export const MediaRequest = z.strictObject({ sha256: Sha256, variant: MediaVariant.default('thumb') });
export const MediaResponse = z.object({ mime: z.string(), base64: z.string() });

export const EmptyRequest = z.strictObject({});
