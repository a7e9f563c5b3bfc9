// The engine side of the utility process, without Electron: answers HostRequests with the
// WorkbenchService and forwards its events. engine-host.ts binds it to process.parentPort.
import { ApiError } from '../../shared/api/contract.js';
import type { WorkbenchService } from '../engine/workbench/service.js';
import type { HostReply, HostRequest } from './protocol.js';

export function createHost(service: WorkbenchService, send: (msg: HostReply) => void, onShutdown: () => void): (msg: HostRequest) => void {
  service.events.on((event) => send({ type: 'event', event }));
  const fail = (err: unknown) => (err instanceof ApiError ? err : new ApiError('internal', err instanceof Error ? err.message : String(err))).toBody();
  return (msg) => {
    if (msg.type === 'shutdown') {
      onShutdown();
      return;
    }
    if (msg.type === 'call') {
      service.call(msg.method, msg.payload).then(
        (result) => send({ type: 'result', id: msg.id, ok: true, result }),
        (err: unknown) => send({ type: 'result', id: msg.id, ok: false, error: fail(err) }),
      );
      return;
    }
    if (msg.type === 'media') {
      service.mediaBytes(msg.sha256, msg.variant).then(
        (m) => send({ type: 'media', id: msg.id, ok: true, mime: m.mime, bytes: new Uint8Array(m.bytes) }),
        (err: unknown) => send({ type: 'media', id: msg.id, ok: false, error: fail(err) }),
      );
    }
  };
}
