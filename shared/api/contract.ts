// The workbench API: one typed contract, two transports (HTTP/WebSocket from `parallax serve`,
// IPC through the Electron preload). Each method has a request and a response schema; the
// names are those of methods.ts, and a type-level check below keeps the two lists identical.
import * as z from 'zod';
import type { ApiMethod } from './methods.js';
import * as S from './schemas.js';

export const API = {
  status: { request: S.StatusRequest, response: S.StatusResponse },
  queue: { request: S.QueueRequest, response: S.QueueResponse },
  item: { request: S.ItemRequest, response: S.ItemDetail },
  label: { request: S.LabelRequest, response: S.LabelResponse },
  labelBulk: { request: S.LabelBulkRequest, response: S.LabelResponse },
  similar: { request: S.SimilarRequest, response: S.SimilarResponse },
  triage: { request: S.TriageRequest, response: S.TriageResponse },
  map: { request: S.MapRequest, response: S.MapResponse },
  drift: { request: S.DriftRequest, response: S.DriftResponse },
  detectorSets: { request: S.DetectorSetsRequest, response: S.DetectorSetsResponse },
  retrainPlan: { request: S.RetrainPlanRequest, response: S.RetrainPlan },
  retrainPreview: { request: S.RetrainPlanRequest, response: S.JobRef },
  retrain: { request: S.RetrainRequest, response: S.JobRef },
  activate: { request: S.ActivateRequest, response: S.ActivateResponse },
  rollback: { request: S.RollbackRequest, response: S.ActivateResponse },
  compare: { request: S.CompareRequest, response: S.CompareResponse },
  exportBundle: { request: S.ExportRequest, response: S.ExportResponse },
  importBundle: { request: S.ImportRequest, response: S.ImportResponse },
  baselines: { request: S.BaselinesRequest, response: S.BaselinesResponse },
  baselineItems: { request: S.BaselineItemsRequest, response: S.BaselineItemsResponse },
  baselineImport: { request: S.BaselineImportRequest, response: S.JobRef },
  scan: { request: S.ScanRequest, response: S.JobRef },
  rescan: { request: S.RescanRequest, response: S.JobRef },
  jobs: { request: S.JobsRequest, response: S.JobsResponse },
  job: { request: S.JobRequest, response: S.Job },
  jobCancel: { request: S.JobRequest, response: S.Job },
  media: { request: S.MediaRequest, response: S.MediaResponse },
} as const satisfies Record<ApiMethod, { request: z.ZodType; response: z.ZodType }>;

// Both directions: every name in methods.ts has schemas, and every schema has a name there.
type _NoExtraMethods = keyof typeof API extends ApiMethod ? true : never;
const _noExtra: _NoExtraMethods = true;
void _noExtra;

export type Api = typeof API;
/** What a caller passes (defaults may be left out). */
export type Req<M extends ApiMethod> = z.input<Api[M]['request']>;
/** What a handler receives after validation (defaults filled in). */
export type ParsedReq<M extends ApiMethod> = z.output<Api[M]['request']>;
export type Res<M extends ApiMethod> = z.output<Api[M]['response']>;

// ---- events -----------------------------------------------------------------------------------

export const ApiEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('hello'), at: z.string() }),
  z.object({ type: z.literal('job'), job: S.Job }),
  z.object({
    type: z.literal('changed'),
    /** What to refetch: the queue, one item, the detector sets, the baselines. */
    what: z.enum(['queue', 'items', 'models', 'baselines']),
    sha256s: z.array(S.Sha256).optional(),
  }),
]);
export type ApiEvent = z.infer<typeof ApiEvent>;

// ---- errors -----------------------------------------------------------------------------------

export type ApiErrorCode =
  | 'bad_request'
  | 'not_found'
  | 'conflict'
  | 'unauthorized'
  | 'media_not_retained'
  | 'unavailable'
  | 'internal';

/** What travels over either transport when a call fails. */
export interface ApiErrorBody {
  code: ApiErrorCode;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toBody(): ApiErrorBody {
    return { code: this.code, message: this.message };
  }
}

/** Reports zod issues by their path, so the message names the field that is wrong. */
export function describeIssues(error: z.ZodError, what: string): string {
  const parts = error.issues.slice(0, 5).map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  const more = error.issues.length > 5 ? ` (+${error.issues.length - 5} more)` : '';
  return `${what}: ${parts.join('; ')}${more}`;
}

export function parseRequest<M extends ApiMethod>(method: M, payload: unknown): ParsedReq<M> {
  const r = API[method].request.safeParse(payload ?? {});
  if (!r.success) throw new ApiError('bad_request', describeIssues(r.error, `invalid ${method} request`));
  return r.data as ParsedReq<M>;
}

export function parseResponse<M extends ApiMethod>(method: M, payload: unknown): Res<M> {
  const r = API[method].response.safeParse(payload);
  if (!r.success) throw new ApiError('internal', describeIssues(r.error, `invalid ${method} response`));
  return r.data as Res<M>;
}
