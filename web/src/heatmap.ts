/** Head-to-head matrices as HTML tables with coloured cells (readable, and read out by screen readers). */
import { el } from "./ui";

/** Light colours only, so dark text on them keeps its contrast. */
export type Rgb = [number, number, number];
const WHITE: Rgb = [255, 255, 255];
const RED: Rgb = [240, 150, 140]; // a low win rate
const BLUE: Rgb = [140, 180, 245]; // a high win rate, or many battles

function mix(a: Rgb, b: Rgb, t: number): Rgb {
  const u = Math.min(Math.max(t, 0), 1);
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * u)) as Rgb;
}

/** A win rate's colour: red below one half, white at one half, blue above. */
export function winRateColour(rate: number): Rgb {
  return rate < 0.5 ? mix(WHITE, RED, (0.5 - rate) * 2) : mix(WHITE, BLUE, (rate - 0.5) * 2);
}

/** A count's colour, from white (none) to blue (the most in the matrix). */
export function countColour(count: number, most: number): Rgb {
  return mix(WHITE, BLUE, most > 0 ? count / most : 0);
}

export const css = ([r, g, b]: Rgb) => `rgb(${r}, ${g}, ${b})`;

export interface HeatmapSpec<T> {
  id: string;
  caption: string;
  models: string[];
  values: T[][];
  /** The text in a cell; its colour, or null for none (e.g. a model against itself). */
  text: (value: T, row: number, col: number) => string;
  colour: (value: T, row: number, col: number) => Rgb | null;
  /** A cell's fuller description (title), e.g. "vla-a beat vla-b in 3 of 4 battles". */
  describe?: (value: T, row: number, col: number) => string;
}

/** The matrix as a table: rows and columns are models; row against column in each cell. */
export function heatmap<T>(spec: HeatmapSpec<T>): HTMLTableElement {
  const table = el("table", { id: spec.id, class: "heatmap" });
  table.append(el("caption", {}, spec.caption));
  const head = el("tr", {}, el("th", { scope: "col" }, "Row vs column"));
  for (const m of spec.models) head.append(el("th", { scope: "col" }, m));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  spec.models.forEach((model, r) => {
    const row = el("tr", {}, el("th", { scope: "row" }, model));
    spec.models.forEach((_, c) => {
      const value = spec.values[r]?.[c];
      const cell = el("td");
      if (value === undefined || r === c) {
        cell.textContent = "—";
        cell.className = "self";
      } else {
        cell.textContent = spec.text(value, r, c);
        const colour = spec.colour(value, r, c);
        if (colour) cell.style.backgroundColor = css(colour); // CSSOM: allowed by the CSP
        if (spec.describe) cell.title = spec.describe(value, r, c);
      }
      row.append(cell);
    });
    body.append(row);
  });
  table.append(body);
  return table;
}
