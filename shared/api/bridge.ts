// What the Electron preload exposes to the window as `window.parallax`: one function per API
// method (each on its own IPC channel), an event subscription, and nothing else. Results come
// back in an envelope because Electron reduces errors thrown across IPC to a bare message.
import type { ApiErrorBody } from './contract.js';
import type { ApiMethod } from './methods.js';

export type BridgeResult = { ok: true; result: unknown } | { ok: false; error: ApiErrorBody };

export type ParallaxBridge = {
  readonly [M in ApiMethod]: (payload: unknown) => Promise<BridgeResult>;
} & {
  /** Backend events (job progress, changes); returns an unsubscribe function. */
  readonly onEvent: (listener: (event: unknown) => void) => () => void;
};

/** Origins of the desktop app's custom protocol: the app itself, and the isolated chart frame. */
export const APP_ORIGIN = 'app://parallax';
export const PLOT_ORIGIN = 'app://plot';
