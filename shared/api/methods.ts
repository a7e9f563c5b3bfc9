// The names of the workbench API's methods, with no dependency at all: the sandboxed Electron
// preload bundles this list to expose one function per IPC channel, and it must stay tiny.
// contract.ts holds the schemas; a test checks that both lists agree.

export const API_METHODS = [
  'status',
  'queue',
  'item',
  'label',
  'labelBulk',
  'similar',
  'triage',
  'map',
  'drift',
  'detectorSets',
  'retrainPlan',
  'retrainPreview',
  'retrain',
  'activate',
  'rollback',
  'compare',
  'exportBundle',
  'importBundle',
  'baselines',
  'baselineItems',
  'baselineImport',
  'scan',
  'rescan',
  'jobs',
  'job',
  'jobCancel',
  'media',
] as const;

export type ApiMethod = (typeof API_METHODS)[number];

/** IPC channel of one method: one channel per method, never a generic "invoke anything". */
export function ipcChannel(method: ApiMethod): string {
  return `parallax:api:${method}`;
}

/** The one channel on which the backend pushes events (job progress, changes) to the window. */
export const IPC_EVENT_CHANNEL = 'parallax:event';

export function isApiMethod(name: string): name is ApiMethod {
  return (API_METHODS as readonly string[]).includes(name);
}
