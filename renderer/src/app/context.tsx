// React context: the API client, the analyst's name, and the queue the analyst is working
// through (so the item view can step to the next item with j/k).
import { createContext, useContext } from 'react';
import type { ApiClient } from '../../../shared/api/client.js';
import type { QueueItem } from '../../../shared/api/schemas.js';

export interface WorkbenchContext {
  api: ApiClient;
  analyst: string;
  setAnalyst(name: string): void;
  /** The sha256s of the triage list as last shown, in order. */
  queueOrder: string[];
  setQueueOrder(order: string[]): void;
  queueItems: Map<string, QueueItem>;
  notify(message: string, kind?: 'info' | 'error'): void;
}

export const Ctx = createContext<WorkbenchContext | null>(null);

export function useWorkbench(): WorkbenchContext {
  const c = useContext(Ctx);
  if (!c) throw new Error('useWorkbench outside <Ctx.Provider>');
  return c;
}

export function useApi(): ApiClient {
  return useWorkbench().api;
}
