// The Electron transport: the preload's `window.parallax` bridge, one function per method.
import type { ParallaxBridge } from '../../../shared/api/bridge.js';
import { APP_ORIGIN, PLOT_ORIGIN } from '../../../shared/api/bridge.js';
import { errorFromBody, type Transport } from '../../../shared/api/client.js';
import type { ApiMethod } from '../../../shared/api/methods.js';

export function ipcTransport(bridge: ParallaxBridge): Transport {
  return {
    name: 'ipc',
    async invoke(method: ApiMethod, payload: unknown) {
      const res = await bridge[method](payload);
      if (!res.ok) throw errorFromBody(res.error, `${method} failed`);
      return res.result;
    },
    subscribe(listener) {
      return bridge.onEvent(listener);
    },
    mediaUrl(sha256, variant) {
      return `${APP_ORIGIN}/media/${sha256}/${variant}`;
    },
    plotFrameUrl() {
      return `${PLOT_ORIGIN}/plot-frame.html`;
    },
    onConnection(listener) {
      // IPC to the main process does not drop; the utility process restarting is reported as events.
      listener(true);
      return () => {};
    },
  };
}
