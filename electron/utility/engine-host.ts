// Entry of the Electron utility process: the engine (onnxruntime-node, better-sqlite3) lives
// here, out of the main process, so a crash in a native addon costs a restart, not the window.
// Started by main.ts with `--data-dir <folder>`.
import { Engine } from '../engine/engine.js';
import { WorkbenchService } from '../engine/workbench/service.js';
import { createHost } from './host.js';
import type { HostReply, HostRequest } from './protocol.js';

interface ParentPort {
  on(event: 'message', cb: (e: { data: HostRequest }) => void): void;
  postMessage(msg: HostReply): void;
}

const port = (process as unknown as { parentPort?: ParentPort }).parentPort;
if (!port) {
  process.stderr.write('engine-host: not started as an Electron utility process\n');
  process.exit(2);
}
const i = process.argv.indexOf('--data-dir');
const dataDir = i >= 0 ? process.argv[i + 1] : undefined;
if (!dataDir) {
  process.stderr.write('engine-host: --data-dir is required\n');
  process.exit(2);
}

const engine = await Engine.open({ dataDir });
const service = await WorkbenchService.create({ engine, transport: 'ipc', demo: true });
const handle = createHost(service, (msg) => port.postMessage(msg), () => {
  void service
    .close()
    .then(() => engine.close())
    .finally(() => process.exit(0));
});
port.on('message', (e) => handle(e.data));
