// Messages between the page and the chart frame. The frame runs plotly on another site (so in
// another renderer process): its 1–2 s of script start-up and heavy redraws never block the
// page. It holds no token and can call nothing; it only draws what it is sent.

/** One plotly figure; `data` and `layout` are plotly's own shapes. */
export interface Figure {
  key: string;
  height: number;
  data: Record<string, unknown>[];
  layout: Record<string, unknown>;
  config?: Record<string, unknown>;
}

export type ToFrame = { type: 'render'; seq: number; figures: Figure[] } | { type: 'dump-regl' };

export type FromFrame =
  | { type: 'ready'; webgl: boolean }
  | { type: 'rendered'; seq: number; ms: number; renderer: 'webgl' | 'svg' }
  /** `ids` are the points' customdata (indices into the page's own arrays). */
  | { type: 'select'; key: string; ids: number[] }
  | { type: 'click'; key: string; id: number }
  | { type: 'violation'; directive: string; source: string }
  | { type: 'error'; message: string }
  | { type: 'regl'; code: Record<string, string> };
