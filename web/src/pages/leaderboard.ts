/** The leaderboard: filters, ratings with CIs and agreement, the CI chart, head-to-head heatmaps. */
import { api, boardQuery, type BoardFilters, type Leaderboard, type Matrix, type Rating } from "../api";
import { countColour, heatmap, winRateColour } from "../heatmap";
import { el, errorText, interval, pct, provisionalBadge, scroller } from "../ui";
import type { IsCurrent } from "./battle";

/** The hash for a filtered board, e.g. `#/leaderboard?task=lift`. */
export const boardHash = (filters: BoardFilters): string => `#/leaderboard${boardQuery(filters)}`;

/** The id of the filter that just changed: it gets the focus back once the board is rebuilt. */
let refocus = "";

export async function leaderboardPage(root: HTMLElement, isCurrent: IsCurrent, filters: BoardFilters = {}): Promise<void> {
  root.replaceChildren();
  const focusId = refocus;
  refocus = "";
  const heading = el("h1", {}, "Leaderboard");
  const status = el("p", { id: "board-status", role: "status" }, "Loading the leaderboard…");
  root.append(heading, status);
  let board: Leaderboard;
  try {
    board = await api.leaderboard(filters);
  } catch (error) {
    if (!isCurrent()) return;
    status.textContent = `The leaderboard could not be loaded: ${errorText(error)}`;
    status.classList.add("error");
    if (filters.task || filters.scene) root.append(el("p", {}, el("a", { href: "#/leaderboard" }, "Show the whole leaderboard")));
    return;
  }
  if (!isCurrent()) return;
  status.textContent = "";
  const scope = [board.task ? `task “${board.task}”` : "", board.scene ? `scene “${board.scene}”` : ""].filter(Boolean).join(", ");
  if (scope) heading.textContent = `Leaderboard: ${scope}`;
  root.append(
    filterForm(board, filters),
    el("p", { id: "votes" }, `${board.votes} vote${board.votes === 1 ? "" : "s"}. ` + (board.agreement.n === 0
      ? "No vote for A or B yet in a battle where one side succeeded more often in simulation, to compare with."
      : `Votes agreed with the simulator in ${pct(board.agreement.value)} of the ${board.agreement.n} `
        + `battles where one side succeeded more often (95% interval ${pct(board.agreement.ci_low)}–${pct(board.agreement.ci_high)}).`)),
  );
  if (focusId) document.getElementById(focusId)?.focus();
  if (board.ratings.length === 0) {
    root.append(el("p", { id: "board-empty" }, "No votes here yet: play a battle and vote to put models on the board."));
    return;
  }
  root.append(
    scroller("Ratings", ratingsTable(board)),
    el("p", { class: "note", id: "provisional-note" }, provisionalBadge(board.provisional_votes),
      ` A rating is provisional while it rests on fewer than ${board.provisional_votes} votes: `
      + "its interval is wide and its rank can still change a lot."),
    el("p", { class: "note" }, "Rating: Bradley–Terry strength from the votes (Elo-like scale) with its 95% interval. "
      + "Vote–sim agreement: among votes for A or B in this model's battles where one side succeeded more often in "
      + "simulation, how often the vote went to that side."),
    el("h2", {}, "Ratings with 95% intervals"),
    chart(board.ratings),
    el("h2", {}, "Head to head"),
    scroller("Pairwise win rate", winRateTable(board.matrix)),
    scroller("Battles per pair", battlesTable(board.matrix)),
  );
}

function filterForm(board: Leaderboard, filters: BoardFilters): HTMLFormElement {
  const form = el("form", { id: "board-filters", "aria-label": "Filter the leaderboard" });
  const select = (id: string, label: string, all: string, values: string[], current: string | undefined) => {
    const node = el("select", { id }, el("option", { value: "" }, all),
      ...values.map((v) => el("option", { value: v }, v)));
    if (current && !values.includes(current)) node.append(el("option", { value: current }, current));
    node.value = current ?? "";
    form.append(el("label", { for: id }, label), node);
    return node;
  };
  const task = select("task-filter", "Task", "All tasks", board.task_kinds, filters.task);
  const scene = select("scene-filter", "Scene", "All scenes", board.scene_ids, filters.scene);
  const apply = (changed?: HTMLSelectElement) => {
    refocus = changed?.id ?? "";
    location.hash = boardHash({ task: task.value || undefined, scene: scene.value || undefined });
  };
  task.onchange = () => apply(task);
  scene.onchange = () => apply(scene);
  form.onsubmit = (event) => { event.preventDefault(); apply(); };
  return form;
}

function ratingsTable(board: Leaderboard): HTMLTableElement {
  const table = el("table", { id: "leaderboard" }, el("caption", {}, "Models ranked by their rating from votes"));
  const head = el("tr");
  for (const h of ["Rank", "Model", "Rating", "95% CI", "Vote–sim agreement", "Battles", "W / T / L", "Sim success"]) {
    head.append(el("th", { scope: "col" }, h));
  }
  table.append(el("thead", {}, head));
  const body = el("tbody");
  for (const r of board.ratings) {
    const model = el("th", { scope: "row" }, r.model);
    if (r.provisional) model.append(" ", provisionalBadge(board.provisional_votes));
    const row = el("tr", { "data-model": r.model }, el("td", {}, String(r.rank)), model);
    for (const [text, cls] of [
      [r.rating.toFixed(0), "rating"], [`${r.ci_low.toFixed(0)} – ${r.ci_high.toFixed(0)}`, "ci"],
      [interval(r.agreement), "agreement"], [String(r.battles), "battles"],
      [`${r.wins} / ${r.ties} / ${r.losses}`, "wtl"], [interval(r.sim_success), "sim"],
    ]) row.append(el("td", { class: cls }, text));
    body.append(row);
  }
  table.append(body);
  return table;
}

function winRateTable(matrix: Matrix): HTMLTableElement {
  return heatmap<number | null>({
    id: "winrate-matrix",
    caption: "Win rate of the row model against the column model (wins plus half the ties, over their battles)",
    models: matrix.models,
    values: matrix.win_rate,
    text: (v) => pct(v),
    colour: (v) => (v === null ? null : winRateColour(v)),
    describe: (v, r, c) => (v === null
      ? `${matrix.models[r]} has not met ${matrix.models[c]}`
      : `${matrix.models[r]} scored ${pct(v)} against ${matrix.models[c]} in ${matrix.battles[r]?.[c] ?? 0} battles`),
  });
}

function battlesTable(matrix: Matrix): HTMLTableElement {
  const most = Math.max(0, ...matrix.battles.flat());
  return heatmap<number>({
    id: "battles-matrix",
    caption: "Voted battles between each pair of models",
    models: matrix.models,
    values: matrix.battles,
    text: (v) => String(v),
    colour: (v) => countColour(v, most),
  });
}

/** Ratings as dots with CI bars (SVG). */
export function chart(ratings: Rating[]): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  // Each model's label sits above its bar, so no name is too long for the chart.
  const rowH = 40, left = 10, width = 640;
  svg.setAttribute("viewBox", `0 0 ${width} ${rowH * ratings.length + 10}`);
  svg.setAttribute("id", "rating-chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Ratings with 95% intervals: ${ratings
    .map((r) => `${r.model} ${r.rating.toFixed(0)} (${r.ci_low.toFixed(0)}–${r.ci_high.toFixed(0)})`).join("; ")}`);
  if (ratings.length === 0) return svg;
  const lo = Math.min(...ratings.map((r) => r.ci_low)), hi = Math.max(...ratings.map((r) => r.ci_high));
  const x = (v: number) => left + ((v - lo) / Math.max(hi - lo, 1)) * (width - left - 20);
  ratings.forEach((r, k) => {
    const y = 30 + k * rowH;
    const add = (tag: string, attrs: Record<string, string | number>, text = "") => {
      const node = document.createElementNS(ns, tag);
      for (const [a, v] of Object.entries(attrs)) node.setAttribute(a, String(v));
      node.textContent = text;
      svg.append(node);
    };
    const label = `${r.model}${r.provisional ? " (provisional)" : ""}: ${r.rating.toFixed(0)}`;
    add("text", { x: left, y: y - 10, "font-size": 12 }, label);
    add("line", { x1: x(r.ci_low), x2: x(r.ci_high), y1: y, y2: y, stroke: "#555", "stroke-width": 2 });
    add("circle", { cx: x(r.rating), cy: y, r: 5, fill: r.provisional ? "#9a6700" : "#1f6feb" });
  });
  return svg;
}
