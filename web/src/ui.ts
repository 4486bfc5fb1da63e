/** Small DOM and formatting helpers shared by the pages (no framework). */
import { ApiError } from "./api";

type Child = Node | string;

/** An element with attributes and children (strings become text). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

/** What to tell the user about an error: the API's `detail` when it gave one. */
export function errorText(error: unknown): string {
  if (error instanceof ApiError) return error.body.detail || error.body.error;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** A fraction as a whole percentage; "–" when there is none. */
export function pct(x: number | null | undefined): string {
  return x === null || x === undefined || Number.isNaN(x) ? "–" : `${Math.round(x * 100)}%`;
}

/** A value with its 95% interval, e.g. "62% (48–75%, n=40)". */
export function interval(i: { value: number | null; ci_low: number; ci_high: number; n: number }): string {
  if (i.n === 0 || i.value === null) return "–";
  return `${pct(i.value)} (${pct(i.ci_low)}–${pct(i.ci_high)}, n=${i.n})`;
}

/** A parameter count people read at a glance: 1.2M, 350M, 7.0B (rounded first: 999,950 is 1.0M). */
export function humanCount(n: number | null | undefined): string {
  if (n === null || n === undefined) return "unknown";
  if (n < 1000) return String(n);
  const units: [number, string][] = [[1e3, "k"], [1e6, "M"], [1e9, "B"], [1e12, "T"]];
  for (const [size, unit] of units) {
    const v = n / size;
    const text = v < 9.95 ? v.toFixed(1) : v.toFixed(0);
    if (Number(text) < 1000 || unit === "T") return `${text}${unit}`;
  }
  return String(n); // not reached: "T" always returns
}

/** A wide table in a region that scrolls sideways (keyboard-focusable, named). */
export function scroller(label: string, table: HTMLElement): HTMLDivElement {
  return el("div", { class: "table-scroll", role: "region", "aria-label": label, tabindex: "0" }, table);
}

/** A small label for a rating that rests on few votes. */
export function provisionalBadge(threshold: number | null): HTMLSpanElement {
  const title = threshold === null
    ? "Provisional: too few votes yet for a settled rating"
    : `Provisional: fewer than ${threshold} votes yet; the rating can still move a lot`;
  return el("span", { class: "badge provisional", title }, "provisional");
}
