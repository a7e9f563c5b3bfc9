// Runs `parallax mcp ...` without the rest of the CLI: `node entry.js guard --data-dir D -- cmd`.
// The latency bench starts the guard through it, and so do the tests until main.ts routes
// `parallax mcp` here; the behaviour is the same as through bin/parallax.js.
import { defaultDataDir } from '../cli/data-dir.js';
import { mcpCommand } from '../cli/mcp-command.js';

process.exitCode = await mcpCommand(process.argv.slice(2), { dataDir: defaultDataDir() });
