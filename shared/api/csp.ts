// The workbench's Content-Security-Policies, one definition for both transports (the
// browser server and Electron's app:// protocol); only the origins differ.

/** The page: no inline script, no eval, nothing from elsewhere; `frame` hosts the chart frame. */
export function pageCsp(origins: { connect: string; frame: string }): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "worker-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    `connect-src ${origins.connect}`,
    `frame-src ${origins.frame}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "object-src 'none'",
  ].join('; ');
}

/**
 * The chart frame: still no eval (regl's code is precompiled), embeddable by the page only.
 * plotly writes its own <style> rules at run time, so inline styles are allowed here, and only
 * here: the frame holds no token and can reach nothing.
 */
export function plotFrameCsp(frameAncestors: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    `frame-ancestors ${frameAncestors}`,
    "base-uri 'none'",
    "form-action 'none'",
    "object-src 'none'",
  ].join('; ');
}
