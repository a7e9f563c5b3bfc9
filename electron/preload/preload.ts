// The sandboxed preload: exposes `window.parallax`, one function per API method, each invoking
// its own IPC channel, plus an event subscription. Nothing else from Electron or Node reaches
// the page. Bundled to one CommonJS file (dist/electron/preload/preload.cjs).
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import type { BridgeResult, ParallaxBridge } from '../../shared/api/bridge.js';
import { API_METHODS, IPC_EVENT_CHANNEL, ipcChannel, type ApiMethod } from '../../shared/api/methods.js';

const calls = {} as Record<ApiMethod, (payload: unknown) => Promise<BridgeResult>>;
for (const method of API_METHODS) {
  const channel = ipcChannel(method);
  calls[method] = (payload: unknown) => ipcRenderer.invoke(channel, payload) as Promise<BridgeResult>;
}
const bridge: ParallaxBridge = {
  ...calls,
  onEvent(listener: (event: unknown) => void) {
    const wrapped = (_e: IpcRendererEvent, event: unknown) => listener(event);
    ipcRenderer.on(IPC_EVENT_CHANNEL, wrapped);
    return () => {
      ipcRenderer.removeListener(IPC_EVENT_CHANNEL, wrapped);
    };
  },
};

contextBridge.exposeInMainWorld('parallax', bridge);
