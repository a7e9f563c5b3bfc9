// The workbench's event stream: job progress and "something changed, refetch" notices. The
// HTTP server fans it out to WebSocket clients, the Electron utility process to the window.
import { EventEmitter } from 'node:events';
import type { ApiEvent } from '../../../shared/api/contract.js';

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Every open window or socket is a listener; the default cap of 10 would warn spuriously.
    this.emitter.setMaxListeners(0);
  }

  emit(event: ApiEvent): void {
    this.emitter.emit('event', event);
  }

  on(listener: (event: ApiEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
