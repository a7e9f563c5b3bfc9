// zod compiles object parsers with `new Function` when it may; under this page's CSP (no
// eval) merely probing for that is reported as a violation. Imported first, before any schema
// parses anything.
import * as z from 'zod';

z.config({ jitless: true });
