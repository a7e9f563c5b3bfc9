// A minimal MCP server for the guard latency bench: `node bench-server.js <image...>`.
// Tool `image` returns image number `index` as an image content block, read from disk on
// every call (as a real server would); `warmup` returns a small generated PNG that is in
// no list, so warming the guard up caches nothing the bench then measures.
import fs from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import sharp from 'sharp';
import { z } from 'zod';
import { sniff } from '../ingest/sniff.js';

const images = process.argv.slice(2);
const server = new McpServer({ name: 'parallax-bench-images', version: '1.0.0' });

server.registerTool(
  'image',
  { description: 'Image number `index` of the bench list', inputSchema: { index: z.number().int().min(0) } },
  async ({ index }) => {
    const file = images[index];
    if (!file) return { content: [{ type: 'text', text: `no image ${index}` }], isError: true };
    const bytes = await fs.promises.readFile(file);
    return { content: [{ type: 'image', data: bytes.toString('base64'), mimeType: sniff(bytes).mime }] };
  },
);

server.registerTool('warmup', { description: 'A generated PNG outside the bench list' }, async () => {
  const size = 96;
  const px = Buffer.alloc(size * size * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 7) % 251;
  const png = await sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
  return { content: [{ type: 'image', data: png.toString('base64'), mimeType: 'image/png' }] };
});

await server.connect(new StdioServerTransport());
