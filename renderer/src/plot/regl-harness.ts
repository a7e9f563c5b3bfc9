// Page for scripts/gen-regl-codegen.ts (not part of the app): drives the chart frame through
// every map figure the workbench draws, with and without selections, then asks the frame for
// the drawing code regl generated, so it can be shipped precompiled.
import { mapFigure, type ColourBy, type MapPoints } from './figures.js';
import type { FromFrame, ToFrame } from './protocol.js';

const frameOrigin = `${location.protocol}//localhost:${location.port}`;
const frame = document.createElement('iframe');
frame.src = `${frameOrigin}/plot-frame.html#parent=${encodeURIComponent(location.origin)}`;
frame.style.width = '900px';
frame.style.height = '640px';
document.body.appendChild(frame);

function points(n: number): MapPoints {
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296);
  const x = new Float32Array(n), y = new Float32Array(n), risk = new Float32Array(n), time = new Float64Array(n);
  const sourceIndex = new Int32Array(n);
  let kind = '', decision = '', label = '', sha = '';
  for (let i = 0; i < n; i++) {
    x[i] = rnd() * 10;
    y[i] = rnd() * 10;
    kind += i < n / 2 ? 'f' : i < (3 * n) / 4 ? 'b' : 's';
    decision += i < (3 * n) / 4 ? '-' : 'arb'[i % 3];
    label += i % 11 === 0 ? 'b' : i % 13 === 0 ? 'm' : '-';
    risk[i] = i < (3 * n) / 4 ? Number.NaN : rnd();
    time[i] = Date.now() - rnd() * 30 * 86_400_000;
    sourceIndex[i] = i < (3 * n) / 4 ? -1 : i % 3;
    sha += (i.toString(16).padStart(8, '0')).repeat(8);
  }
  return { n, x, y, kind, decision, label, sources: ['cli', 'mcp', 'workbench'], sourceIndex, risk, time, sha256: sha };
}

function waitFor(type: FromFrame['type']): Promise<FromFrame> {
  return new Promise((resolve) => {
    const on = (e: MessageEvent<FromFrame>) => {
      if (e.origin !== frameOrigin || e.data?.type !== type) return;
      window.removeEventListener('message', on);
      resolve(e.data);
    };
    window.addEventListener('message', on);
  });
}

async function main(): Promise<void> {
  await waitFor('ready');
  const p = points(3000);
  let seq = 0;
  const send = (msg: ToFrame) => frame.contentWindow!.postMessage(msg, frameOrigin);
  for (const colourBy of ['decision', 'label', 'source', 'time'] as ColourBy[]) {
    const fig = mapFigure(p, colourBy, 'harness', 600);
    send({ type: 'render', seq: ++seq, figures: [fig] });
    await waitFor('rendered');
    // A selection restyles every trace with selected / unselected points.
    const selected = { ...fig, data: fig.data.map((t) => ({ ...t, selectedpoints: [0, 1, 2, 3, 4] })) };
    send({ type: 'render', seq: ++seq, figures: [selected] });
    await waitFor('rendered');
  }
  send({ type: 'dump-regl' });
  const dump = (await waitFor('regl')) as Extract<FromFrame, { type: 'regl' }>;
  (window as unknown as { __regl: Record<string, string> }).__regl = dump.code;
}

void main();
