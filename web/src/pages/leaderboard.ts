/** The leaderboard: ratings with CIs, ranks, battles, sim success, and a chart of the CIs. */
import { api, type Rating } from "../api";
import type { IsCurrent } from "./battle";

const pct = (x: number | null) => (x === null ? "–" : `${Math.round(x * 100)}%`);

export async function leaderboardPage(root: HTMLElement, isCurrent: IsCurrent): Promise<void> {
  const board = await api.leaderboard();
  if (!isCurrent()) return;
  root.replaceChildren();
  const table = document.createElement("table");
  table.id = "leaderboard";
  table.innerHTML = "<thead><tr><th>Rank</th><th>Model</th><th>Rating</th><th>95% CI</th><th>Battles</th><th>W / T / L</th><th>Sim success</th></tr></thead>";
  const body = table.createTBody();
  for (const r of board.ratings) {
    const row = body.insertRow();
    const s = r.sim_success;
    for (const text of [String(r.rank), r.model, r.rating.toFixed(0), `${r.ci_low.toFixed(0)} – ${r.ci_high.toFixed(0)}`,
      String(r.battles), `${r.wins} / ${r.ties} / ${r.losses}`, `${pct(s.value)} (${pct(s.ci_low)}–${pct(s.ci_high)}, n=${s.n})`]) {
      row.insertCell().textContent = text;
    }
  }
  const summary = document.createElement("p");
  summary.id = "votes";
  summary.textContent = `${board.votes} vote${board.votes === 1 ? "" : "s"}. Votes agreed with the simulator in ${pct(board.agreement.value)} of ${board.agreement.n} decided battles.`;
  root.append(summary, table, chart(board.ratings));
}

/** Ratings as dots with CI bars (SVG). */
export function chart(ratings: Rating[]): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const rowH = 28, left = 180, width = 640;
  svg.setAttribute("viewBox", `0 0 ${width} ${rowH * ratings.length + 20}`);
  svg.setAttribute("id", "rating-chart");
  if (ratings.length === 0) return svg;
  const lo = Math.min(...ratings.map((r) => r.ci_low)), hi = Math.max(...ratings.map((r) => r.ci_high));
  const x = (v: number) => left + ((v - lo) / Math.max(hi - lo, 1)) * (width - left - 20);
  ratings.forEach((r, k) => {
    const y = 14 + k * rowH;
    const add = (tag: string, attrs: Record<string, string | number>, text = "") => {
      const node = document.createElementNS(ns, tag);
      for (const [a, v] of Object.entries(attrs)) node.setAttribute(a, String(v));
      node.textContent = text;
      svg.append(node);
    };
    add("text", { x: 4, y: y + 4, "font-size": 12 }, r.model);
    add("line", { x1: x(r.ci_low), x2: x(r.ci_high), y1: y, y2: y, stroke: "#555", "stroke-width": 2 });
    add("circle", { cx: x(r.rating), cy: y, r: 5, fill: "#1f6feb" });
  });
  return svg;
}
