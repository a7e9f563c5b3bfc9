// The one API client the renderer (and the tests) use. It knows nothing of how calls travel:
// a Transport carries them (HTTP + WebSocket in a browser, IPC through the preload in
// Electron). The client validates what it sends and what comes back against the contract.
import { API_METHODS, type ApiMethod } from './methods.js';
import { ApiError, ApiEvent, describeIssues, parseResponse, type ApiErrorBody, type Req, type Res, API } from './contract.js';

export type MediaVariant = 'thumb' | 'full';

/** How calls travel. `invoke` resolves with the raw response body or rejects with an ApiError. */
export interface Transport {
  readonly name: string;
  invoke(method: ApiMethod, payload: unknown): Promise<unknown>;
  /** Raw events pushed by the backend; returns an unsubscribe function. */
  subscribe(listener: (event: unknown) => void): () => void;
  /** A URL an <img> can load for this item's media (the transport adds what it needs). */
  mediaUrl(sha256: string, variant: MediaVariant): string;
  /**
   * Where the chart frame is loaded from: another site than the page's own, so that the
   * charting library runs in its own renderer process and never blocks the page.
   */
  plotFrameUrl(): string;
  /** Connection state changes (a WebSocket reconnecting, say). */
  onConnection?(listener: (connected: boolean) => void): () => void;
}

export type ApiCalls = { [M in ApiMethod]: (req?: Req<M>) => Promise<Res<M>> };

export interface ApiClient extends ApiCalls {
  readonly transport: string;
  subscribe(listener: (event: ApiEvent) => void): () => void;
  mediaUrl(sha256: string, variant?: MediaVariant): string;
  plotFrameUrl(): string;
  onConnection(listener: (connected: boolean) => void): () => void;
}

export function createApiClient(transport: Transport): ApiClient {
  const calls = {} as Record<ApiMethod, (req?: unknown) => Promise<unknown>>;
  for (const method of API_METHODS) {
    calls[method] = async (req?: unknown) => {
      const checked = API[method].request.safeParse(req ?? {});
      if (!checked.success) throw new ApiError('bad_request', describeIssues(checked.error, `invalid ${method} request`));
      // Send what the caller wrote (not the parsed form): the server fills the same defaults.
      const raw = await transport.invoke(method, req ?? {});
      return parseResponse(method, raw);
    };
  }
  return {
    ...(calls as unknown as ApiCalls),
    transport: transport.name,
    subscribe(listener) {
      return transport.subscribe((raw) => {
        const e = ApiEvent.safeParse(raw);
        if (e.success) listener(e.data);
      });
    },
    mediaUrl(sha256, variant = 'thumb') {
      return transport.mediaUrl(sha256, variant);
    },
    plotFrameUrl() {
      return transport.plotFrameUrl();
    },
    onConnection(listener) {
      return transport.onConnection?.(listener) ?? (() => {});
    },
  };
}

/** Turns a transport's error envelope back into an ApiError. */
export function errorFromBody(body: unknown, fallback: string): ApiError {
  const b = body as Partial<ApiErrorBody> | null;
  if (b && typeof b.code === 'string' && typeof b.message === 'string') return new ApiError(b.code as ApiErrorBody['code'], b.message);
  return new ApiError('internal', fallback);
}
