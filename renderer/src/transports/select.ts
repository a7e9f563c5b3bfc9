// The one place that picks a transport. Everything else sees only the ApiClient.
import type { ParallaxBridge } from '../../../shared/api/bridge.js';
import { createApiClient, type ApiClient } from '../../../shared/api/client.js';
import { httpTransport, takeToken } from './http.js';
import { ipcTransport } from './ipc.js';

export function connect(): ApiClient | { error: string } {
  const bridge = (window as unknown as { parallax?: ParallaxBridge }).parallax;
  if (bridge) return createApiClient(ipcTransport(bridge));
  const token = takeToken();
  if (!token) return { error: "This page needs the URL that 'parallax serve' printed (it carries the access token)." };
  return createApiClient(httpTransport(token));
}
